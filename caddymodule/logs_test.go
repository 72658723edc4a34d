package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The loggers of the roles that must not name their users: relays,
// responders, entrances, and caddy-l4's own server logger.
var userFacingLoggers = []string{
	"layer4.handlers.gunshu_relay",
	"layer4.handlers.gunshu_responder",
	"layer4.handlers.gunshu_initiator",
}

func isUserFacing(logger string) bool {
	return logger == "layer4" || strings.HasPrefix(logger, "layer4.") && !strings.HasPrefix(logger, "layer4.handlers.gunshu_manager")
}

var socketAddr = regexp.MustCompile(`(?:\d{1,3}\.){3}\d{1,3}:\d+|\[[0-9a-fA-F:.]+\]:\d+`)

// TestLogsNameNoClientsUnlessAsked runs 50 sessions through an entrance, a
// relay and a responder with JSON logs at debug level, and checks that no
// client or predecessor address (any socket address that is not one of
// the config's own listeners) appears in their logs; then that with
// log_addresses every client's address does.
func TestLogsNameNoClientsUnlessAsked(t *testing.T) {
	const sessions = 50
	for _, logAddresses := range []bool{false, true} {
		t.Run(fmt.Sprintf("log_addresses=%v", logAddresses), func(t *testing.T) {
			n := startOpsNet(t, logAddresses)
			clients := make([]string, 0, sessions)
			for i := range sessions {
				payload := fmt.Appendf(nil, "session %d", i)
				echo, local, err := n.session(payload)
				if err != nil || !bytes.Equal(echo, payload) {
					t.Fatalf("session %d: echo %q, %v", i, echo, err)
				}
				clients = append(clients, local)
			}
			entries := n.waitSessionLogs(sessions)
			// Each role logged its handshake at debug too.
			for logger, msg := range map[string]string{
				"layer4.handlers.gunshu_relay":     "route extended",
				"layer4.handlers.gunshu_responder": "est received",
				"layer4.handlers.gunshu_initiator": "route established",
			} {
				count := 0
				for _, e := range entries {
					if e["logger"] == logger && e["msg"] == msg && e["level"] == "debug" {
						count++
					}
				}
				if count < sessions {
					t.Errorf("%s logged %q at debug %d times, want one per session (%d)", logger, msg, count, sessions)
				}
			}

			own := map[string]bool{n.admin: true, n.manager: true, n.status: true, n.responder: true, n.entrance: true}
			for _, r := range n.relays {
				own[r] = true
			}
			var foreign []string
			for _, e := range entries {
				logger, _ := e["logger"].(string)
				if !isUserFacing(logger) {
					continue
				}
				line, _ := json.Marshal(e)
				for _, addr := range socketAddr.FindAllString(string(line), -1) {
					// Port 0 is no connection's end: a dial error names the
					// relay's own source so ("dial tcp 127.0.0.1:0->…"),
					// when a registration is refused before the manager
					// listens.
					if !own[addr] && !strings.HasSuffix(addr, ":0") {
						foreign = append(foreign, fmt.Sprintf("%s in %s", addr, line))
					}
				}
			}
			if !logAddresses {
				for _, f := range foreign {
					t.Errorf("a peer's address is logged: %s", f)
				}
				return
			}
			// Asked for: every client's address is in the entrance's log,
			// and the relay and responder name their predecessors.
			joined := strings.Join(foreign, "\n")
			for _, c := range clients {
				if !strings.Contains(joined, c) {
					t.Errorf("client %s is not in the logs although log_addresses is set", c)
				}
			}
			for _, logger := range userFacingLoggers[:2] {
				if n := countRemote(entries, logger); n < sessions {
					t.Errorf("%s logged a remote address in %d sessions, want at least %d", logger, n, sessions)
				}
			}
		})
	}
}

// waitSessionLogs waits until the relay, responder and entrance loggers
// wrote their info line for every est session, and returns the log.
func (n *opsNet) waitSessionLogs(sessions int) []map[string]any {
	n.t.Helper()
	var counts map[string]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entries := n.readLog()
		counts = map[string]int{}
		for _, e := range entries {
			if e["msg"] == "session" && e["command"] == "est" && e["outcome"] == "ok" && e["level"] == "info" {
				counts[e["logger"].(string)]++
			}
		}
		done := true
		for _, l := range userFacingLoggers {
			done = done && counts[l] >= sessions
		}
		if done {
			return entries
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("after 5s the log holds these est session lines: %v; want %d for each of %v", counts, sessions, userFacingLoggers)
		}
	}
}

// countRemote counts logger's est sessions whose line names the remote
// address.
func countRemote(entries []map[string]any, logger string) int {
	count := 0
	for _, e := range entries {
		if e["logger"] != logger || e["msg"] != "session" || e["command"] != "est" {
			continue
		}
		if remote, ok := e["remote"].(string); ok {
			if _, _, err := net.SplitHostPort(remote); err == nil {
				count++
			}
		}
	}
	return count
}
