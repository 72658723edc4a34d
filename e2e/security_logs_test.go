package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestExampleLogsNameNoAddress runs Caddyfile.example as shipped (its log
// at INFO), and again with its log at DEBUG, in a Caddy process; provokes
// every line that named a client, a predecessor, a next hop or a
// destination (#16.4): slow and vanishing clients during caddy-l4's
// matching, refused lists, entrance sessions and proxy requests, each
// from a loopback address of its own; and then looks for those addresses
// and destinations in everything the process wrote.
func TestExampleLogsNameNoAddress(t *testing.T) {
	for _, level := range []string{"INFO", "DEBUG"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			e := newExample(t, func(s string) string {
				if level == "INFO" {
					return s
				}
				return strings.Replace(s, "\tlog {\n", "\tlog {\n\t\tlevel DEBUG\n", 1)
			})
			p := caddyproc.Start(t, caddyproc.Config{Name: "logs", Caddyfile: e.Caddyfile})
			testnet.WaitListing(t, e.Addr("7000"), []string{e.Addr("7001"), e.Addr("7002"), e.Addr("7003")}, 15*time.Second)
			secrets := attacks.ProvokeLogs(e.Targets())
			p.Stop() // flushes the log
			log := logOf(p)
			for _, line := range attacks.LinesNaming(log, secrets) {
				t.Errorf("a log line names a client or a destination: %s", line)
			}
			// The lines in question were written (with what they may
			// say): the test is not vacuous.
			for what, want := range map[string]int{
				`"logger":"layer4","msg":"matching connection"`:               4,
				`"outcome":"bad_input"`:                                       3,
				`"error":"denied by policy: [address] is in`:                  3,
				`"logger":"layer4.handlers.gunshu_initiator","msg":"session"`: 3,
			} {
				if got := strings.Count(log, what); got < want {
					t.Errorf("the log holds %d lines with %s, want at least %d", got, what, want)
				}
			}
			if level == "DEBUG" && !strings.Contains(log, `"msg":"started handling connection"`) {
				t.Error("caddy-l4 wrote no debug line at DEBUG")
			}
			if t.Failed() {
				t.Logf("the log:\n%s", log)
			}
		})
	}
}
