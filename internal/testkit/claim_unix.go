//go:build unix

package testkit

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// claimPort claims port for this test process against every other test
// process of the machine, with an exclusive lock on a file of the port's
// own in a directory they share; release gives it back. A claim that
// another holds gives (nil, nil). The kernel drops a lock with its
// process, so a test process that dies leaves no claim behind; the files
// stay, as removing one could split a claim between a process that still
// has the old file open and one that creates a new.
func claimPort(port int) (release func(), err error) {
	dir := filepath.Join(os.TempDir(), "gunshu-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
