package gunshu

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// serveEntrance runs e on a fresh loopback listener until the test ends.
func serveEntrance(t *testing.T, e *Entrance) string {
	t.Helper()
	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = acceptLoop(ln, func(c net.Conn) { _ = e.ServeConn(c) })
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// TestEntrance: a plain TCP client that knows nothing of Gunshu reaches
// the responder through a fresh route, and its half-close passes.
func TestEntrance(t *testing.T) {
	n := newTestNet(t, 3)
	echo := n.echoResponder(t)
	entrance := serveEntrance(t, &Entrance{Dialer: n.dialer(11), Responder: echo})
	for i := range 10 {
		c := dialRaw(t, entrance)
		msg := strings.Repeat("plain client ", 1000+i)
		writeRaw(t, c, msg)
		_ = c.CloseWrite()
		if got := readToEnd(t, c); got != msg {
			t.Fatalf("client %d: echo of %d bytes came back as %d", i, len(msg), len(got))
		}
	}
}

// TestEntranceNoRoute: when no route can be built the client's
// connection is cut at once, with nothing written to it.
func TestEntranceNoRoute(t *testing.T) {
	n := newTestNet(t, 0)
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	d := n.dialer(12)
	d.Timeouts = Timeouts{Command: time.Second}
	entrance := serveEntrance(t, &Entrance{Dialer: d, Responder: deadAddr})
	// The entrance resets the client; the reset may even beat the end
	// of connect.
	c, err := net.DialTimeout("tcp", entrance, 2*time.Second)
	if err != nil && !isReset(err) {
		t.Fatal(err)
	}
	if err == nil {
		expectClosed(t, c, 3*time.Second)
		c.Close()
	}

	// With relays but a dead responder every attempt fails the same way.
	n.addRelay(t)
	d2 := n.dialer(13)
	if _, err := d2.Establish(context.Background(), deadAddr); err == nil {
		t.Fatal("a route to a dead responder was established")
	}
}
