package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// impostorSites adds to Caddyfile.example a second site on 127.0.0.2
// with its own responder, and a manager "lax" that lists without
// verifying and patrols every 200 ms, a manager "blind" that neither
// verifies nor patrols within the test, and an entrance that asks it.
// Caddyfile.example has one global
// options block, so the pieces go into its gunshu and layer4 blocks.
func impostorSites(s, responderB, siteB, lax, blind, blindEntrance, responderA string) string {
	r := strings.NewReplacer("{responderB}", responderB, "{siteB}", siteB, "{lax}", lax,
		"{siteBPort}", siteB[strings.LastIndex(siteB, ":")+1:], "{blind}", blind,
		"{blindEntrance}", blindEntrance, "{responderA}", responderA)
	s = strings.Replace(s, "\tgunshu {\n", r.Replace(`	gunshu {
		manager lax {
			allow 127.0.0.0/8
			verify off
			patrol_interval 200ms
		}
		manager blind {
			allow 127.0.0.0/8
			verify off
			patrol_interval 1h
		}
`), 1)
	s = strings.Replace(s, "\tlayer4 {\n", r.Replace(`	layer4 {
		{responderB} {
			route {
				gunshu_responder
				proxy {siteB}
			}
		}
		{lax} {
			route {
				gunshu_manager lax
			}
		}
		{blind} {
			route {
				gunshu_manager blind
			}
		}
		{blindEntrance} {
			route {
				gunshu_initiator {responderA} {
					manager {blind}
				}
			}
		}
`), 1)
	return s + r.Replace(`
http://:{siteBPort} {
	bind 127.0.0.2
	respond "site B" 200
}
`)
}

// TestImpostorResponder (#16.2): a responder answers test with ok, so an
// attacker may register one as a relay (here from its own address, as
// require_source_match wants); routes through it would end at its site.
// The manager refuses it at registration, a manager that does not verify
// drops it at its next patrol, and every checksummed session through the
// entrance gets its own answer from its own site.
func TestImpostorResponder(t *testing.T) {
	responderB, siteB, lax := addrOn(t, "127.0.0.2"), addrOn(t, "127.0.0.2"), "127.0.0.1:"+port(t)
	blind, blindEntrance := "127.0.0.1:"+port(t), "127.0.0.1:"+port(t)
	// The example's responder, 127.0.0.1:7100, gets its free port with
	// the rest of the example's addresses.
	e := newExample(t, func(s string) string {
		return impostorSites(s, responderB, siteB, lax, blind, blindEntrance, "127.0.0.1:7100")
	})
	p := caddyproc.Start(t, caddyproc.Config{Name: "impostor", Caddyfile: e.Caddyfile})
	testnet.WaitListing(t, e.Addr("7000"), []string{e.Addr("7001"), e.Addr("7002"), e.Addr("7003")}, 15*time.Second)

	answer, err := attacks.Exchange(attacks.From("127.0.0.2"), e.Addr("7000"), "reg\n"+responderB+"\n")
	if answer != "fail\n" {
		t.Fatalf("registering a responder as a relay: answered %q (%v), want fail", answer, err)
	}
	if n, err := attacks.Listed(e.Addr("7000"), []string{responderB}); err != nil || n != 0 {
		t.Fatalf("the manager lists the responder (%d, %v)", n, err)
	}
	waitThrough(t, e.Addr("8000"), "127.0.0.1", "/echo/ready", "/echo/ready")
	wrong := 0
	for i := range 40 {
		path := fmt.Sprintf("/echo/%08x", uint32(i)*2654435761)
		body, err := attacks.Through(e.Addr("8000"), "127.0.0.1", path)
		if err != nil {
			t.Fatalf("session %d: %v; log:\n%s", i, err, logOf(p))
		}
		if body != path {
			wrong++
			t.Errorf("session %d: got %q, want %q", i, body, path)
		}
	}
	t.Logf("%d of 40 checksummed sessions got another site's bytes", wrong)

	// Without verification the responder gets listed, and patrol drops it.
	answer, _ = attacks.Exchange(attacks.From("127.0.0.2"), lax, "reg\n"+responderB+"\n")
	if answer != "ok\n" {
		t.Fatalf("the manager without verification answered %q", answer)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logOf(p), `"msg":"service removed","manager":"lax","service":"`+responderB+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("patrol did not drop the responder within 10 s; log:\n%s", logOf(p))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, err := attacks.Listed(lax, []string{responderB}); err != nil || n != 0 {
		t.Fatalf("after patrol the lax manager lists the responder (%d, %v)", n, err)
	}
	if !strings.Contains(logOf(p), "a responder, not a relay") {
		t.Error("the log does not say why the service was removed")
	}

	// A manager that neither verifies nor patrols lists the responder
	// alone: the entrance that asks it probes its guard, refuses, says
	// so, and delivers no byte of site B.
	if answer, _ := attacks.Exchange(attacks.From("127.0.0.2"), blind, "reg\n"+responderB+"\n"); answer != "ok\n" {
		t.Fatalf("the blind manager answered %q", answer)
	}
	from := p.LogLen()
	for i := range 5 {
		// No route: the client sees its connection fail, not a page.
		if body, err := attacks.Through(blindEntrance, "127.0.0.1", "/echo/blind"); err == nil || body != "" {
			t.Errorf("session %d through the blind manager's entrance: %q, %v; want no answer", i, body, err)
		}
	}
	if _, err := p.WaitLog(from, "answered as a responder does", 10*time.Second); err != nil {
		t.Errorf("the entrance did not say its first hop is a responder: %v", err)
	}
}
