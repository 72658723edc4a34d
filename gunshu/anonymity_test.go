package gunshu_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestLogsNameNoPredecessor: whatever happens to a session (refused
// input, a dead next hop, a reset mid-stream, a clean end), the relay's
// and the responder's logs never carry the address of the peer before
// them, unless the operator asks for it.
func TestLogsNameNoPredecessor(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Logger: log, Timeouts: gunshu.Timeouts{Command: 300 * time.Millisecond}})
	resp, _ := serveResponder(t, &gunshu.Responder{Logger: log}, func(c net.Conn) { c.Close() })
	dead := testkit.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()

	var clients []string
	session := func(script func(c *net.TCPConn)) {
		c := dialRaw(t, relay)
		clients = append(clients, c.LocalAddr().String())
		script(c)
		c.Close()
	}
	session(func(c *net.TCPConn) { writeRaw(t, c, "bogus\n"); readToEnd(t, c) })
	session(func(c *net.TCPConn) { writeRaw(t, c, "est\n1\n"+deadAddr+"\n"); readToEnd(t, c) })
	session(func(c *net.TCPConn) { writeRaw(t, c, "est"); readToEnd(t, c) }) // times out
	session(func(c *net.TCPConn) {
		writeRaw(t, c, "est\n1\n"+resp+"\nforward\n")
		expectRead(t, c, "ok\n")
	})
	session(func(c *net.TCPConn) {
		next := newFakeHop(t)
		writeRaw(t, c, "est\n1\n"+next.addr+"\nforward\n")
		down := next.answerOK(t, c)
		expectRead(t, down, "forward\n")
		_ = c.SetLinger(0) // the client vanishes with a reset
	})
	// The responder's predecessor is the relay: its outgoing addresses
	// must not show in the responder's lines either.
	testkit.Eventually(t, 2*time.Second, "sessions still running", func() bool { return logs.FilterMessage("session").Len() >= 6 })

	entries := logs.All()
	if len(entries) == 0 {
		t.Fatal("nothing was logged")
	}
	for _, e := range entries {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		for _, client := range clients {
			if strings.Contains(line, client) {
				t.Errorf("log line names client %s: %s", client, line)
			}
		}
		if strings.Contains(line, "remote=") {
			t.Errorf("log line carries a remote address though LogAddresses is off: %s", line)
		}
	}
}

// TestLogsNamePredecessorWhenAsked: LogAddresses puts it back.
func TestLogsNamePredecessorWhenAsked(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Logger: zap.New(core), LogAddresses: true})
	c := dialRaw(t, relay)
	client := c.LocalAddr().String()
	writeRaw(t, c, "test\n")
	readToEnd(t, c)
	testkit.Eventually(t, 2*time.Second, "no session line", func() bool { return logs.FilterMessage("session").Len() == 1 })
	if got := logs.FilterMessage("session").All()[0].ContextMap()["remote"]; got != client {
		t.Fatalf("remote = %v, want %s", got, client)
	}
}
