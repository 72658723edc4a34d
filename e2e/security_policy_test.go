package e2e

import (
	"fmt"
	"testing"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
)

// TestRelayDialPolicy (#16.5): a relay with the default policy refuses
// every next hop of attacks.PolicySpellings by policy (the session says policy_denied): none
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
	for _, next := range attacks.PolicySpellings {
		answer, err := attacks.Exchange(attacks.From("127.0.0.1"), relay, "est\n1\n"+next+"\n")
		if answer != "fail\n" {
			t.Errorf("est to %s: %q (%v), want fail", next, answer, err)
		}
	}
	denied := waitLines(t, p, len(attacks.PolicySpellings), `"command":"est","outcome":"policy_denied"`)
	t.Logf("%d of %d next hops refused by policy", denied, len(attacks.PolicySpellings))
	if denied != len(attacks.PolicySpellings) {
		t.Errorf("%d of %d next hops refused by policy; the log:\n%s", denied, len(attacks.PolicySpellings), logOf(p))
	}
}
