package gunshu

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestLimiterCounts(t *testing.T) {
	l := &SessionLimiter{MaxSessions: 3, MaxPerIP: 2}
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Acquire(a))
	must(l.Acquire(netip.MustParseAddr("::ffff:192.0.2.1")))
	if err := l.Acquire(a); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("third from a: %v", err)
	}
	must(l.Acquire(b))
	if err := l.Acquire(c); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("fourth in all: %v", err)
	}
	l.Release(a)
	must(l.Acquire(c))
	l.Release(a)
	l.Release(b)
	l.Release(c)
	if l.Sessions() != 0 || len(l.perSrc) != 0 {
		t.Fatalf("after release: %d sessions, %d sources remembered", l.Sessions(), len(l.perSrc))
	}
	// One IPv6 /64 is one source.
	v6 := &SessionLimiter{MaxPerIP: 1}
	must(v6.Acquire(netip.MustParseAddr("2001:db8::1")))
	if err := v6.Acquire(netip.MustParseAddr("2001:db8::2")); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("same /64: %v", err)
	}
	must(v6.Acquire(netip.MustParseAddr("2001:db8:1::1")))
	var none *SessionLimiter
	must(none.Acquire(a))
	none.Release(a)
}

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
	lim := &SessionLimiter{MaxSessions: 3, MaxPerIP: 2}
	r := &Relay{SessionLimiter: lim}
	addr := serveRelay(t, r)
	h1, h2 := holdConn(t, "127.0.0.1", addr), holdConn(t, "127.0.0.1", addr)
	waitFor(t, 2*time.Second, "two sessions", func() bool { return lim.Sessions() == 2 })
	if got := readReply(t, holdConn(t, "127.0.0.1", addr)); got != "fail\n" {
		t.Fatalf("third from one address = %q, want fail", got)
	}
	h3 := holdConn(t, "127.0.0.2", addr)
	waitFor(t, 2*time.Second, "three sessions", func() bool { return lim.Sessions() == 3 })
	if got := readReply(t, holdConn(t, "127.0.0.3", addr)); got != "fail\n" {
		t.Fatalf("past MaxSessions = %q, want fail", got)
	}
	h1.Close()
	waitFor(t, 2*time.Second, "a free slot", func() bool { return lim.Sessions() == 2 })
	if got := exchange(t, addr, "test\n"); got != "ok\n" {
		t.Fatalf("test after a slot freed = %q", got)
	}
	h2.Close()
	h3.Close()
	waitFor(t, 2*time.Second, "no sessions", func() bool { return lim.Sessions() == 0 })
}

func TestResponderLimiterCountsStreams(t *testing.T) {
	lim := &SessionLimiter{MaxSessions: 1}
	ln := listen(t)
	rl := (&Responder{SessionLimiter: lim, Timeouts: Timeouts{Command: 2 * time.Second}}).Listen(ln, 0)
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
	waitFor(t, 2*time.Second, "the slot to free", func() bool { return lim.Sessions() == 0 })
	if got := exchange(t, ln.Addr().String(), "test\n"); got != "ok\n" {
		t.Fatalf("test after the stream closed = %q", got)
	}
}
