// Package attacks holds the attacks of issue #16, each as a function that
// runs it against servers at given addresses and returns what it
// achieved: the security tests (e2e/security) assert bounds on those
// figures against Caddy processes of this tree, and bench/security runs
// the same functions against two Caddy binaries to measure before and
// after. Every attack is bounded in count and time, and uses loopback
// only.
package attacks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// From is a dialer whose connections leave from ip, a loopback address
// (127.0.0.0/8): the attacker's source address, for tests that must tell
// it from every other address in a log or a list.
func From(ip string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
}

// Exchange sends msg to addr from the dialer and returns what the server
// answered before it closed, within 10 s.
func Exchange(d *net.Dialer, addr, msg string) (string, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// Servers are listeners serving until Close.
type Servers struct {
	Addrs []string
	lns   []net.Listener
	wg    sync.WaitGroup
	stop  []func()
}

// Close stops every server and waits for its goroutines.
func (s *Servers) Close() {
	for _, ln := range s.lns {
		ln.Close()
	}
	for _, f := range s.stop {
		f()
	}
	s.wg.Wait()
}

func (s *Servers) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.lns = append(s.lns, ln)
	s.Addrs = append(s.Addrs, ln.Addr().String())
	return ln, nil
}

// FakeRelays starts n relays answering test and est as a relay does, on
// the given loopback IPs in turn: what a Sybil attacker registers.
func FakeRelays(ips []string, n int) (*Servers, error) {
	s := &Servers{}
	for i := range n {
		ln, err := s.listen(ips[i%len(ips)] + ":0")
		if err != nil {
			return nil, err
		}
		r := &gunshu.Relay{}
		s.stop = append(s.stop, func() { _ = r.Close() })
		s.wg.Go(func() { _ = r.Serve(ln) })
	}
	return s, nil
}

// Counter is a listener that counts the connections it accepts and
// closes them: the victim of a reflection, or a next hop that must not be
// dialed.
type Counter struct {
	*Servers
	n atomic.Int64
}

// NewCounter listens on addr (host:0 for a free port).
func NewCounter(addr string) (*Counter, error) {
	c := &Counter{Servers: &Servers{}}
	ln, err := c.listen(addr)
	if err != nil {
		return nil, err
	}
	c.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	})
	return c, nil
}

// Accepted is how many connections the counter accepted.
func (c *Counter) Accepted() int64 { return c.n.Load() }

// Tarpit is a listener that accepts, reads and never answers, until
// Close: the end of a route that must stay open while it is measured.
func Tarpit(addr string) (*Servers, error) {
	s := &Servers{}
	ln, err := s.listen(addr)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var conns []net.Conn
	s.stop = append(s.stop, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
	})
	return s, nil
}

// RegisterFlood sends reg for each of addrs to manager from the source
// IP from, over and over, for d at most (and at most rounds times through
// the list), with up to 16 exchanges in flight; it returns how many reg
// were answered ok, and how many were sent.
func RegisterFlood(ctx context.Context, manager, from string, addrs []string, d time.Duration, rounds int) (ok, sent int) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	dialer := From(from)
	var okN, sentN atomic.Int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		for _, a := range addrs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			sentN.Add(1)
			wg.Go(func() {
				defer func() { <-sem }()
				if got, _ := Exchange(dialer, manager, "reg\n"+a+"\n"); got == "ok\n" {
					okN.Add(1)
				}
			})
		}
	}
	wg.Wait()
	return int(okN.Load()), int(sentN.Load())
}

// Listed counts the entries of addrs on manager's list.
func Listed(manager string, addrs []string) (int, error) {
	list, err := gunshu.FetchList(context.Background(), manager, 5*time.Second, gunshu.MessageLimits{MaxList: 1 << 20})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range addrs {
		for _, l := range list {
			if l == a {
				n++
				break
			}
		}
	}
	return n, nil
}

// Sockets counts the sockets a process holds open now.
type Sockets func() (int, error)

// Loop sends, from one connection, est with list to relay, where the
// list names the relay under other spellings and ends at a tarpit, and
// returns the most sockets the relay process held beyond baseline while
// the route stood (sampled every 10 ms for hold), and the relay's answer
// if it gave one.
func Loop(relay string, list []string, sockets Sockets, hold time.Duration) (peak int, answer string, err error) {
	base, err := sockets()
	if err != nil {
		return 0, "", err
	}
	c, err := net.DialTimeout("tcp", relay, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	msg := fmt.Sprintf("est\n%d\n%s\n", len(list), strings.Join(list, "\n"))
	if _, err := io.WriteString(c, msg); err != nil {
		return 0, "", err
	}
	got := make(chan string, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(hold))
		b := make([]byte, 16)
		n, _ := c.Read(b)
		got <- string(b[:n])
	}()
	deadline := time.Now().Add(hold)
	for time.Now().Before(deadline) {
		n, err := sockets()
		if err == nil && n-base > peak {
			peak = n - base
		}
		select {
		case answer = <-got:
			return peak, answer, nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return peak, <-got, nil
}

// Through fetches path from an HTTP site (named host) through a fixed
// entrance and returns the body.
func Through(entrance, host, path string) (string, error) {
	c, err := net.DialTimeout("tcp", entrance, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, io.EOF) {
		return string(b), err
	}
	resp := string(b)
	if i := strings.Index(resp, "\r\n\r\n"); i >= 0 {
		return resp[i+4:], nil
	}
	return "", fmt.Errorf("no HTTP response: %q", resp)
}
