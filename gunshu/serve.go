package gunshu

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// Serve accepts connections on ln and serves each in its own goroutine
// until ln is closed; it then waits for the connections in hand.
func (r *Relay) Serve(ln net.Listener) error {
	return acceptLoop(ln, func(c net.Conn) { _ = r.ServeConn(c) })
}

// Serve accepts connections on ln and answers each in its own goroutine
// until ln is closed; it then waits for the exchanges in flight.
func (m *Manager) Serve(ln net.Listener) error {
	return acceptLoop(ln, func(c net.Conn) { _ = m.ServeConn(c) })
}

func acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	var backoff acceptBackoff
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if backoff.retry(err) {
				continue
			}
			return err
		}
		backoff.reset()
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(conn)
		}()
	}
}

// acceptBackoff paces Accept after a transient failure. Running out of
// file descriptors is the one a busy relay meets: it must wait for
// sessions to end, not stop serving.
type acceptBackoff struct{ delay time.Duration }

// retry reports whether err is transient, after sleeping: 5 ms at first,
// doubling to 1 s while the failures go on.
func (b *acceptBackoff) retry(err error) bool {
	var ne net.Error
	transient := errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
	if !transient {
		return false
	}
	b.delay = min(max(2*b.delay, 5*time.Millisecond), time.Second)
	time.Sleep(b.delay)
	return true
}

func (b *acceptBackoff) reset() { b.delay = 0 }
