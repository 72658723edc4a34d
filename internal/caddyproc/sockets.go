package caddyproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Sockets counts the sockets the running process holds open now (Linux:
// its descriptors that are sockets).
func (p *Process) Sockets() (int, error) {
	fds := fmt.Sprintf("/proc/%d/fd", p.PID())
	entries, err := os.ReadDir(fds)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fds, e.Name()))
		if errors.Is(err, syscall.ENOENT) {
			continue // closed while we looked
		}
		if err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n, nil
}

// Log is every line the process wrote so far, joined.
func (p *Process) Log() string { return strings.Join(p.Lines(0), "\n") }
