package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestInitiatorWithoutRelays: when the manager lists no relay, the
// entrance ends the client's connection with a reset at once, so the
// client sees a failure and not an empty answer or a hang.
func TestInitiatorWithoutRelays(t *testing.T) {
	manager := testkit.FreeAddr(t)
	entrance := testkit.FreeAddr(t)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"apps": {"layer4": {"servers": {
			"manager": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_manager"}]}]},
			"entrance": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_initiator", "manager": %q, "responder": "192.0.2.1:7100"}]}]}
		}}}
	}`, manager, entrance, manager)
	runConfig(t, []byte(cfg))

	// The reset may come so fast that it ends the dial, the write or the
	// read: all are the failure we want, as long as no byte arrives.
	conn, err := net.DialTimeout("tcp", entrance, 5*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.0\r\n\r\n")); errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return
	} else if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the entrance kept the connection open without a route")
	}
	if !errors.Is(err, syscall.ECONNRESET) || len(got) > 0 {
		t.Fatalf("got %q, %v; want a reset and no bytes", got, err)
	}
}
