package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// responder is a gunshu.Responder that echoes one line per session: the
// end of the entrances' routes.
type responder struct {
	ln   net.Listener
	resp gunshu.Responder
}

func startResponder() (*responder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &responder{ln: ln}
	go r.accept()
	return r, nil
}

func (r *responder) addr() string { return r.ln.Addr().String() }

func (r *responder) accept() {
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			stream, err := r.resp.Handshake(conn, nil)
			if err != nil {
				return
			}
			defer stream.Close()
			line, err := bufio.NewReader(stream).ReadString('\n')
			if err == nil {
				_, _ = stream.Write([]byte(line))
			}
		}()
	}
}

// routeStats are the routes the entrances opened through the relays.
type routeStats struct {
	mu       sync.Mutex
	setups   []time.Duration
	attempts int
	failed   int
}

// run opens a route to responder every every through a gunshu.Dialer with
// the default ListTTL and route size, and checks an echo through it.
func (s *routeStats) run(ctx context.Context, manager, responder string, every time.Duration) {
	d := &gunshu.Dialer{Manager: manager, Attempts: 3}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		start := time.Now()
		err := echoRoute(ctx, d, responder)
		s.mu.Lock()
		s.attempts++
		if err != nil {
			if s.failed++; s.failed <= 3 {
				fmt.Fprintln(os.Stderr, "route:", err)
			}
		} else {
			s.setups = append(s.setups, time.Since(start))
		}
		s.mu.Unlock()
	}
}

func echoRoute(ctx context.Context, d *gunshu.Dialer, responder string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, responder)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(conn).ReadString('\n')
	return err
}

func (s *routeStats) fill(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Routes, r.RoutesFailed = s.attempts, s.failed
	r.RouteP50, r.RouteP99 = quantile(s.setups, 0.5), quantile(s.setups, 0.99)
}
