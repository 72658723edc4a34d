package gunshu_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// holdConn opens a connection from local IP from that sends nothing, so
// the server holds it in its handshake.
func holdConn(t testing.TB, from, to string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRelayLimiter(t *testing.T) {
	lim := &gunshu.SessionLimiter{MaxSessions: 3, MaxPerIP: 2}
	r := &gunshu.Relay{SessionLimiter: lim}
	addr := testnet.ServeRelay(t, r)
	h1, h2 := holdConn(t, "127.0.0.1", addr), holdConn(t, "127.0.0.1", addr)
	testkit.Eventually(t, 2*time.Second, "two sessions", func() bool { return lim.Sessions() == 2 })
	if got := sendFrom(t, "127.0.0.1", addr, "est\n1\n127.0.0.1:9\n"); got != "fail\n" {
		t.Fatalf("third from one address = %q, want fail", got)
	}
	h3 := holdConn(t, "127.0.0.2", addr)
	testkit.Eventually(t, 2*time.Second, "three sessions", func() bool { return lim.Sessions() == 3 })
	if got := sendFrom(t, "127.0.0.3", addr, "est\n1\n127.0.0.1:9\n"); got != "fail\n" {
		t.Fatalf("past MaxSessions = %q, want fail", got)
	}
	// A full relay still answers the manager's test (#16.6), from any
	// address, so patrol does not delist it for being busy.
	for _, from := range []string{"127.0.0.1", "127.0.0.3"} {
		if got := sendFrom(t, from, addr, "test\n"); got != "ok\n" {
			t.Fatalf("test from %s at the limits = %q, want ok", from, got)
		}
	}
	if _, err := gunshu.Ping(context.Background(), addr, time.Second); err != nil {
		t.Fatalf("a manager's test of the full relay: %v", err)
	}
	// A peer that sends nothing is cut within the bound of its own.
	if got := readReply(t, holdConn(t, "127.0.0.3", addr)); got != "fail\n" {
		t.Fatalf("silent past MaxSessions = %q, want fail", got)
	}
	h1.Close()
	testkit.Eventually(t, 2*time.Second, "a free slot", func() bool { return lim.Sessions() == 2 })
	if got := exchange(t, addr, "test\n"); got != "ok\n" {
		t.Fatalf("test after a slot freed = %q", got)
	}
	h2.Close()
	h3.Close()
	testkit.Eventually(t, 2*time.Second, "no sessions", func() bool { return lim.Sessions() == 0 })
}

func TestResponderLimiterCountsStreams(t *testing.T) {
	lim := &gunshu.SessionLimiter{MaxSessions: 1}
	ln := testkit.Listen(t)
	rl := (&gunshu.Responder{SessionLimiter: lim, Timeouts: gunshu.Timeouts{Command: 2 * time.Second}}).Listen(ln, 0)
	t.Cleanup(func() { rl.Close(); rl.Wait() })
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := rl.Accept(); err == nil {
			accepted <- c
		}
	}()
	c := dialT(t, ln.Addr().String())
	if _, err := c.Write([]byte("est\n0\nforward\n")); err != nil {
		t.Fatal(err)
	}
	if got := readReply(t, c); got != "ok\n" {
		t.Fatalf("first route = %q", got)
	}
	var st net.Conn
	select {
	case st = <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("no stream")
	}
	// The established stream holds the only slot.
	if got := exchange(t, ln.Addr().String(), "est\n0\n"); got != "fail\n" {
		t.Fatalf("second route while the first streams = %q, want fail", got)
	}
	st.Close()
	testkit.Eventually(t, 2*time.Second, "the slot to free", func() bool { return lim.Sessions() == 0 })
	if got := exchange(t, ln.Addr().String(), "test\n"); got != "ok\n" {
		t.Fatalf("test after the stream closed = %q", got)
	}
}

// sendFrom sends msg from local IP from to addr and returns the reply.
func sendFrom(t testing.TB, from, to, msg string) string {
	t.Helper()
	c := holdConn(t, from, to)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	return readReply(t, c)
}
