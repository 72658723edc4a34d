// Package testkit holds the test helpers every package of this module
// shares: loopback listeners and connections, the loopback networks a
// test must allow, an accept loop that ends with the test, an echo server
// and Eventually. It imports nothing of the module, so package gunshu's
// own tests can use it too; the Gunshu network fixture, which needs
// package gunshu, is package testnet.
package testkit

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Loopback are the networks every test dials. Relays and managers refuse
// them by default (a relay must not become a way into its own network),
// so a test's dial policy allows them: gunshu.Policy{Allow: Loopback}, or
// "allow 127.0.0.0/8" in a Caddyfile.
var Loopback = []string{"127.0.0.0/8"}

// Listen returns a TCP listener on a free port of 127.0.0.1, closed when
// the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	return ListenOn(t, "127.0.0.1:0")
}

// ListenOn is Listen on another address, such as 127.0.0.2:0. On an
// address other than 127.0.0.1, the port the kernel picks is held on
// 127.0.0.1 too until the test ends. The kernel readily gives listeners
// of two loopback addresses the same port number, and a relay reached at
// 127.0.0.2:P refuses a list naming 127.0.0.1:P as itself (it cannot tell
// whether it listens on every address), so a responder that drew P on
// 127.0.0.1 would be refused as a loop.
func ListenOn(t testing.TB, addr string) net.Listener {
	t.Helper()
	if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" && host != "127.0.0.1" {
		return ListenSamePort(t, host, "127.0.0.1")[0]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TCPPair returns both ends of a loopback TCP connection, closed when the
// test ends: near was accepted, far dialed.
func TCPPair(t testing.TB) (near, far *net.TCPConn) {
	t.Helper()
	ln := Listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	ln.Close()
	if a == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); c.Close() })
	return a.(*net.TCPConn), c.(*net.TCPConn)
}

// Serve accepts connections on ln and runs handle for each on a goroutine
// of its own until ln is closed. When the test ends it closes ln and every
// connection it accepted, and waits for the handlers: none outlives the
// test.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// Echo writes back every byte it reads from c until c's stream ends, then
// half-closes c (so the peer sees the end too) and closes it.
func Echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

// EchoServer serves Echo on a fresh loopback listener until the test ends
// and returns its address.
func EchoServer(t testing.TB) string {
	t.Helper()
	ln := Listen(t)
	Serve(t, ln, Echo)
	return ln.Addr().String()
}

// EchoByte writes b to c and reads one byte back, which must be b.
func EchoByte(c net.Conn, b byte) error {
	if _, err := c.Write([]byte{b}); err != nil {
		return err
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if got[0] != b {
		return errors.New("echo mismatch")
	}
	return nil
}

// Eventually polls cond every few milliseconds until it holds, and fails
// the test with what when it has not within timeout. It is for state that
// only polling can see (a registry's contents, a counter); where an event
// can be waited on (a channel, a log line), wait on that instead.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CountingListener counts the connections it accepts.
type CountingListener struct {
	net.Listener
	Accepted atomic.Int64
}

// Accept accepts a connection and counts it.
func (l *CountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.Accepted.Add(1)
	}
	return c, err
}

// CloseEach accepts connections on ln and closes each at once, counting
// them, until the test ends: a place a test must never reach, or a peer
// that hangs up.
func CloseEach(t testing.TB, ln net.Listener) *CountingListener {
	l := &CountingListener{Listener: ln}
	Serve(t, l, func(c net.Conn) { c.Close() })
	return l
}
