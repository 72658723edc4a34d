package caddymodule

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestResponderLogsNoAddress ends a route at a responder whose next
// handler fails (its upstream is down): the failure is logged, and no log
// line names the last relay's address.
func TestResponderLogsNoAddress(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	addr := testkit.FreeAddr(t)
	deadUpstream := testkit.FreeAddr(t)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"logging": {"logs": {"default": {"level": "INFO", "writer": {"output": "file", "filename": %q}}}},
		"apps": {"layer4": {"servers": {"srv0": {
			"listen": [%q],
			"routes": [{"handle": [{"handler": "gunshu_responder"}, {"handler": "proxy", "upstreams": [{"dial": [%q]}]}]}]
		}}}}
	}`, logFile, addr, deadUpstream)
	runConfig(t, []byte(cfg))

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	relayPort := fmt.Sprint(conn.LocalAddr().(*net.TCPAddr).Port)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("est\n0\nforward\nGET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(conn)
	if string(got) != "ok\n" {
		t.Fatalf("the responder answered %q, want ok and then the end of the stream", got)
	}

	var logs string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(logFile)
		if logs = string(b); strings.Contains(logs, "handling the stream") {
			break
		}
	}
	if !strings.Contains(logs, "handling the stream") {
		t.Fatalf("the proxy's failure was not logged:\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, ":"+relayPort) {
			t.Errorf("a log line names the last relay's address (port %s):\n%s", relayPort, line)
		}
	}
}
