package e2e

import (
	"fmt"
	"testing"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
)

// embeddedSpellings are the next hops of #16.5 that a relay dialed, and
// the other special ranges it did not deny: each must be refused by the
// dial policy, never dialed.
var embeddedSpellings = []string{
	"[64:ff9b:1::a9fe:a9fe]:80",        // RFC 8215 local-use NAT64 of 169.254.169.254
	"[::a9fe:a9fe]:80",                 // IPv4-compatible
	"[::ffff:0:a9fe:a9fe]:80",          // SIIT
	"[fec0::1]:80",                     // site-local
	"[64:ff9b::a9fe:a9fe]:80",          // NAT64 well-known prefix
	"[2002:a9fe:a9fe::1]:80",           // 6to4
	"[2001:0:4136:e378::5601:5701]:80", // Teredo
	"[2a00:1::5efe:a9fe:a9fe]:80",      // ISATAP
	"192.0.0.8:80", "198.18.0.1:80", "192.0.2.1:80", "198.51.100.1:80", "203.0.113.1:80",
	"[2001:db8::1]:80", "[100::1]:80",
}

// TestRelayDialPolicy (#16.5): a relay with the default policy refuses
// every spelling above by policy (the session says policy_denied): none
// reaches a dial.
func TestRelayDialPolicy(t *testing.T) {
	relay := "127.0.0.1:" + port(t)
	p := caddyproc.Start(t, caddyproc.Config{Name: "policy", Caddyfile: fmt.Sprintf(`{
	admin off
	layer4 {
		%s {
			route {
				gunshu_relay
			}
		}
	}
}
`, relay)})
	for _, next := range embeddedSpellings {
		answer, err := attacks.Exchange(attacks.From("127.0.0.1"), relay, "est\n1\n"+next+"\n")
		if answer != "fail\n" {
			t.Errorf("est to %s: %q (%v), want fail", next, answer, err)
		}
	}
	denied := waitLines(t, p, len(embeddedSpellings), `"command":"est","outcome":"policy_denied"`)
	t.Logf("%d of %d next hops refused by policy", denied, len(embeddedSpellings))
	if denied != len(embeddedSpellings) {
		t.Errorf("%d of %d next hops refused by policy; the log:\n%s", denied, len(embeddedSpellings), p.Log())
	}
}
