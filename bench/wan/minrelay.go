package main

import (
	"io"
	"net"
	"sync"
	"time"
)

// MinRelay is the floor any relay design is measured against: it dials
// its fixed next hop the moment it accepts a connection, then copies both
// ways (io.Copy between two *net.TCPConn: splice), passing half-closes on.
// It reads nothing first, so the handshakes of a whole chain overlap.
type MinRelay struct {
	Next string
	*server
}

// StartMinRelay listens on a fresh loopback port.
func StartMinRelay(next string) (*MinRelay, error) {
	s, err := listen()
	if err != nil {
		return nil, err
	}
	r := &MinRelay{Next: next, server: s}
	s.serve(r.relay)
	return r, nil
}

func (r *MinRelay) relay(up *net.TCPConn, _ time.Time) {
	down, err := r.dial(r.Next)
	if err != nil {
		return
	}
	defer r.untrack(down)
	defer down.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); pipe(down, up) }()
	pipe(up, down)
	wg.Wait()
}

// pipe copies src to dst and passes the end of src on as a half-close.
func pipe(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	_ = dst.CloseWrite()
}
