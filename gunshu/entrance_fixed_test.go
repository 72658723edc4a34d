package gunshu_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// serveEntrance runs e on a fresh loopback listener until the test ends.
func serveEntrance(t *testing.T, e *gunshu.Entrance) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) { _ = e.ServeConn(c) })
	return ln.Addr().String()
}

// TestEntrance: a plain TCP client that knows nothing of Gunshu reaches
// the responder through a fresh route, and its half-close passes.
func TestEntrance(t *testing.T) {
	n := testnet.New(t, 3)
	echo := testnet.EchoResponder(t)
	entrance := serveEntrance(t, &gunshu.Entrance{Dialer: n.Dialer(11), Responder: echo})
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
	n := testnet.New(t, 0)
	dead := testkit.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	d := n.Dialer(12)
	d.Timeouts = gunshu.Timeouts{Command: time.Second}
	entrance := serveEntrance(t, &gunshu.Entrance{Dialer: d, Responder: deadAddr})
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
	n.AddRelay(t)
	d2 := n.Dialer(13)
	if _, err := d2.Establish(context.Background(), deadAddr); err == nil {
		t.Fatal("a route to a dead responder was established")
	}
}
