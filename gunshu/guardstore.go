package gunshu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
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

// KeyValueStorage is the part of a key-value storage a guard set needs.
// certmagic.Storage, which Caddy's ctx.Storage() returns and the CLI
// uses as caddy.DefaultStorage, has it; its Store replaces a value whole
// (atomically, for the file storage), so a crash leaves the old set or
// the new one.
type KeyValueStorage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
}

// StorageGuardStore keeps a guard set under key in s.
func StorageGuardStore(s KeyValueStorage, key string) GuardStore {
	return storageGuardStore{s: s, key: key}
}

type storageGuardStore struct {
	s   KeyValueStorage
	key string
}

func (g storageGuardStore) Load(ctx context.Context) ([]byte, error) { return g.s.Load(ctx, g.key) }

func (g storageGuardStore) Save(ctx context.Context, data []byte) error {
	return g.s.Store(ctx, g.key, data)
}

// GuardKey is the storage key of the guard set of the initiators that use
// manager and send their routes from cover ("" for none). Initiators with
// the same key should share one Guards: a first hop that sees one source
// address use several guards learns more than from one.
func GuardKey(manager, cover string) string {
	sum := sha256.Sum256([]byte(manager + "\n" + cover))
	return "gunshu/guards/" + hex.EncodeToString(sum[:8]) + ".json"
}

var (
	_ GuardStore = (*MemoryGuardStore)(nil)
	_ GuardStore = storageGuardStore{}
)
