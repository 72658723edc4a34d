package caddymodule

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	_ "github.com/mholt/caddy-l4/modules/l4echo"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// startMatcherServer runs one layer4 server: Gunshu traffic goes to a
// relay, everything else to echo. The matching timeout is long, so a
// matcher that waited for bytes that never come would show.
func startMatcherServer(t *testing.T, commands string) string {
	t.Helper()
	addr := testkit.FreeAddr(t)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"apps": {"layer4": {"servers": {"srv0": {
			"listen": [%q],
			"matching_timeout": "30s",
			"routes": [
				{"match": [{"gunshu": {%s}}], "handle": [{"handler": "gunshu_relay"}]},
				{"handle": [{"handler": "echo"}]}
			]
		}}}}
	}`, addr, commands)
	runConfig(t, []byte(cfg))
	return addr
}

// exchange sends each part (pausing between them), half-closes and
// returns everything the server sent, within 5 s.
func exchange(t *testing.T, addr string, parts ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := conn.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v (got %q)", parts, err, got)
	}
	return string(got)
}

func TestMatcher(t *testing.T) {
	addr := startMatcherServer(t, "")
	cases := []struct {
		name  string
		parts []string
		want  string
	}{
		{"test", []string{"test\n"}, "ok\n"},
		{"test in pieces", []string{"te", "st\r", "\n"}, "ok\n"},
		// Foreign traffic is decided on its first byte: a client that
		// sends one byte and waits for an answer gets it at once, not
		// after the 30 s matching timeout.
		{"one foreign byte", []string{"X"}, "X"},
		{"http", []string{"GET / HTTP/1.1\r\n\r\n"}, "GET / HTTP/1.1\r\n\r\n"},
		{"near miss", []string{"tesT\n"}, "tesT\n"},
		{"est without list goes to the relay", []string{"est\n0\n"}, "fail\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := exchange(t, addr, c.parts...); got != c.want {
				t.Fatalf("sent %q, got %q, want %q", c.parts, got, c.want)
			}
		})
	}
}

func TestMatcherCommands(t *testing.T) {
	addr := startMatcherServer(t, `"commands": ["est"]`)
	if got := exchange(t, addr, "test\n"); got != "test\n" {
		t.Fatalf("test with only est matched: got %q, want the echo", got)
	}
	if got := exchange(t, addr, "est\n0\n"); got != "fail\n" {
		t.Fatalf("est: got %q, want the relay's fail", got)
	}
}
