package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
)

// registrationCaddyfile runs three managers in one Caddy: "defaults" as a
// Caddy user gets them (loopback allowed, as in Caddyfile.example),
// "before" with the defaults before #16 spelled out, and "others", a
// manager that registers relays on behalf of others
// (require_source_match off) and keeps the other defaults.
const registrationCaddyfile = `{
	admin off
	gunshu {
		manager defaults {
			allow 127.0.0.0/8
		}
		manager before {
			allow 127.0.0.0/8
			require_source_match off
			register_rate off
			max_per_network 0
		}
		manager others {
			allow 127.0.0.0/8
			require_source_match off
		}
	}
	layer4 {
		{defaults} {
			route {
				gunshu_manager defaults
			}
		}
		{before} {
			route {
				gunshu_manager before
			}
		}
		{others} {
			route {
				gunshu_manager others
			}
		}
	}
}
`

// TestRegistrationDefaults (#16.1): under the defaults one source lists
// no relay of other addresses, two of its own at most and registers at
// most the burst of the rate, one network lists at most max_per_network
// relays, and a registration of somebody else's address makes the manager
// connect nowhere. The same attacks on "before" show what they did.
func TestRegistrationDefaults(t *testing.T) {
	managers := map[string]string{}
	repl := []string{}
	for _, name := range []string{"defaults", "before", "others"} {
		managers[name] = "127.0.0.1:" + port(t)
		repl = append(repl, "{"+name+"}", managers[name])
	}
	caddyproc.Start(t, caddyproc.Config{Name: "registration", Caddyfile: strings.NewReplacer(repl...).Replace(registrationCaddyfile)})
	// Each attack comes from a source of its own: the rate limit keeps
	// what an earlier one spent.
	ctx := context.Background()

	t.Run("sybils of other addresses", func(t *testing.T) {
		for name, want := range map[string]int{"defaults": 0, "before": 80} {
			listed, err := attacks.SybilsOfOthers(ctx, managers[name], "127.0.0.200")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d of 80 fake relays of other addresses listed", name, listed)
			if listed != want {
				t.Errorf("%s: %d fake relays listed, want %d", name, listed, want)
			}
		}
	})

	t.Run("sybils of its own address", func(t *testing.T) {
		const attacker = "127.0.0.201"
		fakes, err := attacks.FakeRelays([]string{attacker}, 10)
		if err != nil {
			t.Fatal(err)
		}
		defer fakes.Close()
		ok, sent := attacks.RegisterFlood(ctx, managers["defaults"], attacker, fakes.Addrs, 5*time.Second, 3)
		listed, err := attacks.Listed(managers["defaults"], fakes.Addrs)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("defaults: %d of %d reg answered ok, %d listed", ok, sent, listed)
		// The rate lets 6 through at once, and one per 10 s after.
		if ok > 7 || ok < 2 || listed != 2 {
			t.Errorf("one source: %d reg answered ok (want 2 to 7), %d listed (want max_per_ip, 2)", ok, listed)
		}
	})

	t.Run("one network", func(t *testing.T) {
		listed, err := attacks.NetworkSybils(ctx, managers["defaults"])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("defaults: %d of 20 relays of one /24 listed", listed)
		if listed != 8 {
			t.Errorf("%d relays of one /24 listed, want max_per_network (8)", listed)
		}
	})

	t.Run("reflection", func(t *testing.T) {
		for name, maxConns := range map[string]int64{"defaults": 0, "others": 7, "before": -1} {
			got, sent, _, err := attacks.Reflection(ctx, managers[name], "127.0.0.202", 1000)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d reg of a third party's address made the manager connect to it %d times", name, sent, got)
			if maxConns >= 0 && got > maxConns {
				t.Errorf("%s: the manager connected to the third party %d times, want at most %d", name, got, maxConns)
			}
			if maxConns < 0 && got < int64(sent)/2 {
				t.Errorf("%s: the attack made only %d connections: it no longer measures anything", name, got)
			}
		}
	})
}
