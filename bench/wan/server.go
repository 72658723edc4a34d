package main

import (
	"errors"
	"net"
	"sync"
	"time"
)

// server is what links and minimal relays share: a loopback listener
// whose every connection, and every connection its handlers open, is
// tracked, so Close can cut them all and wait for the handlers.
type server struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// listen opens a server on a fresh loopback port.
func listen() (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &server{ln: ln, conns: make(map[net.Conn]struct{}), done: make(chan struct{})}, nil
}

// serve accepts until Close, running handle for each connection with the
// time it was accepted; the connection is tracked and closed after handle.
func (s *server) serve(handle func(c *net.TCPConn, accepted time.Time)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return // closed
			}
			accepted := time.Now()
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				defer c.Close()
				handle(c.(*net.TCPConn), accepted)
			}()
		}
	}()
}

// Addr is the server's own address.
func (s *server) Addr() string { return s.ln.Addr().String() }

// dial connects to addr for a handler; the connection is tracked until
// the caller untracks it.
func (s *server) dial(addr string) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if !s.track(c) {
		c.Close()
		return nil, net.ErrClosed
	}
	return c.(*net.TCPConn), nil
}

func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// active is how many connections the server holds now, both sides.
func (s *server) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, cuts every connection and waits for the handlers.
func (s *server) Close() {
	s.ln.Close()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
