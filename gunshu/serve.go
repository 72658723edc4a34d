package gunshu

import (
	"errors"
	"net"
	"sync"
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
	for {
		conn, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(conn)
		}()
	}
}
