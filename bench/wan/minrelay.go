package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// MinRelay is the floor any relay design is measured against: it dials
// its fixed next hop the moment it accepts a connection, then copies both
// ways (io.Copy between two *net.TCPConn: splice), passing half-closes on.
// It reads nothing, so the handshakes of a whole chain overlap.
type MinRelay struct {
	Next string

	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartMinRelay listens on a fresh loopback port.
func StartMinRelay(next string) (*MinRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &MinRelay{Next: next, ln: ln, conns: make(map[net.Conn]struct{})}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the relay's own (real) address.
func (r *MinRelay) Addr() string { return r.ln.Addr().String() }

// Close stops the relay and cuts its sessions.
func (r *MinRelay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *MinRelay) hold(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *MinRelay) release(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

func (r *MinRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		r.wg.Add(1)
		go r.serve(c.(*net.TCPConn))
	}
}

func (r *MinRelay) serve(up *net.TCPConn) {
	defer r.wg.Done()
	defer up.Close()
	nc, err := net.DialTimeout("tcp", r.Next, 5*time.Second)
	if err != nil {
		return
	}
	down := nc.(*net.TCPConn)
	defer down.Close()
	if !r.hold(up, down) {
		return
	}
	defer r.release(up, down)
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
