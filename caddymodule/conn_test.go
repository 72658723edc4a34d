package caddymodule

import (
	"io"
	"net"
	"testing"

	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestDetach checks that a session gets the raw socket, so its forward
// path can splice, and every byte caddy-l4 buffered, in order.
func TestDetach(t *testing.T) {
	server, client := testkit.TCPPair(t)
	cx := layer4.WrapConnection(server, []byte("est\n1\n"), zap.NewNop())
	conn, buffered, err := detach(cx)
	if err != nil {
		t.Fatal(err)
	}
	if conn != net.Conn(server) {
		t.Fatalf("detach returned %T, want the underlying *net.TCPConn", conn)
	}
	if len(cx.MatchingBytes()) != 0 {
		t.Fatalf("caddy-l4 still holds %q", cx.MatchingBytes())
	}
	if _, err := client.Write([]byte("192.0.2.1:7001\n")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	rest, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buffered) + string(rest)
	if got != "est\n1\n192.0.2.1:7001\n" {
		t.Fatalf("stream after detach: %q", got)
	}
}
