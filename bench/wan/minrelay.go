package main

import (
	"fmt"
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

// Chain is the minimal relays, each behind its own link, the last one's
// next hop the site's link.
type Chain struct {
	Links  []*Link
	relays []*MinRelay
}

func startChain(em *Emulator, site *Site, n int) (*Chain, error) {
	c := &Chain{Links: make([]*Link, n)}
	next := site.Link.Addr()
	for i := n - 1; i >= 0; i-- {
		r, err := StartMinRelay(next)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.relays = append(c.relays, r)
		if c.Links[i], err = em.NewLink(fmt.Sprintf("minimal%d", i+1), r.Addr()); err != nil {
			c.Stop()
			return nil, err
		}
		next = c.Links[i].Addr()
	}
	return c, nil
}

// Stop closes the relays and their links.
func (c *Chain) Stop() {
	for _, r := range c.relays {
		r.Close()
	}
	for _, l := range c.Links {
		if l != nil {
			l.Close()
		}
	}
}
