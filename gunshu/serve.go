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
	var (
		wg    sync.WaitGroup
		pause acceptPause
	)
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if pause.after(err) {
				continue
			}
			return err
		}
		pause.reset()
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(conn)
		}()
	}
}

// acceptPause waits out accept errors that pass: a timeout, or running
// out of descriptors or memory. A relay at its open-file limit must
// resume serving when sessions end instead of stopping for good. The
// wait doubles from 5 ms to 1 s while the errors go on.
type acceptPause struct{ delay time.Duration }

// after sleeps and reports true when err passes; it reports false for an
// error that ends the accept loop.
func (p *acceptPause) after(err error) bool {
	var ne net.Error
	passing := errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
	if !passing {
		return false
	}
	p.delay = min(max(2*p.delay, 5*time.Millisecond), time.Second)
	time.Sleep(p.delay)
	return true
}

func (p *acceptPause) reset() { p.delay = 0 }
