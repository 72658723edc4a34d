package gunshu

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// MemoryGuardStore keeps a guard set in memory: it survives a Dialer, not
// a restart.
type MemoryGuardStore struct {
	mu   sync.Mutex
	data []byte
}

// Load returns the saved set, or fs.ErrNotExist.
func (m *MemoryGuardStore) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), m.data...), nil
}

// Save replaces the saved set.
func (m *MemoryGuardStore) Save(_ context.Context, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte(nil), data...)
	return nil
}

// FileGuardStore keeps a guard set in the file it names, for initiators
// that run outside Caddy (the CLI).
type FileGuardStore string

// Load reads the file; a missing file is fs.ErrNotExist.
func (f FileGuardStore) Load(context.Context) ([]byte, error) {
	return os.ReadFile(string(f))
}

// Save writes the file through a temporary one, so a crash leaves either
// the old set or the new one.
func (f FileGuardStore) Save(_ context.Context, data []byte) error {
	dir := filepath.Dir(string(f))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating guard directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".guards-*")
	if err != nil {
		return fmt.Errorf("creating guard file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing guard file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing guard file: %w", err)
	}
	return os.Rename(tmp.Name(), string(f))
}

var (
	_ GuardStore = (*MemoryGuardStore)(nil)
	_ GuardStore = FileGuardStore("")
)
