package caddymodule

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestRelayRegistersFromEnv: a relay whose addresses are {env.*}
// placeholders registers the expanded address, and only a relay with
// managers registers.
func TestRelayRegistersFromEnv(t *testing.T) {
	manager := testkit.FreeAddr(t)
	relay := testkit.FreeAddr(t)
	quiet := testkit.FreeAddr(t)
	t.Setenv("GUNSHU_TEST_MANAGER", manager)
	t.Setenv("GUNSHU_TEST_PORT", relay[len("127.0.0.1:"):])
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"apps": {
			"gunshu": {"managers": {"default": {"allow": ["127.0.0.0/8"]}}},
			"layer4": {"servers": {
				"manager": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_manager"}]}]},
				"relay": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_relay",
					"managers": ["{env.GUNSHU_TEST_MANAGER}"], "advertise": "127.0.0.1:{env.GUNSHU_TEST_PORT}",
					"register_interval": "1h"}]}]},
				"quiet": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_relay"}]}]}
			}}
		}
	}`, manager, relay, quiet)
	runConfig(t, []byte(cfg))

	var list []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		var err error
		list, err = gunshu.FetchList(context.Background(), manager, time.Second, gunshu.MessageLimits{})
		if err == nil && len(list) == 1 && list[0] == relay {
			break
		}
	}
	if len(list) != 1 || list[0] != relay {
		t.Fatalf("manager lists %v, want only %s", list, relay)
	}

	app, err := caddy.ActiveContext().App("gunshu")
	if err != nil {
		t.Fatal(err)
	}
	relays := app.(*App).Relays()
	if len(relays) != 2 {
		t.Fatalf("the app knows %d relays, want 2", len(relays))
	}
	// The relay records its registration after the manager's ok, which
	// may come a moment after the list shows it.
	registered := func() bool {
		for _, r := range relays {
			if r.AdvertisedAddr() == relay {
				regs := r.Registrations()
				return len(regs) == 1 && regs[0].OK
			}
		}
		return false
	}
	for deadline := time.Now().Add(5 * time.Second); !registered() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range relays {
		regs := r.Registrations()
		switch r.AdvertisedAddr() {
		case relay:
			if len(regs) != 1 || regs[0].Manager != manager || !regs[0].OK {
				t.Errorf("relay %s reports registrations %+v, want one ok with %s", relay, regs, manager)
			}
		case "":
			if regs != nil {
				t.Errorf("the relay without managers reports registrations %+v", regs)
			}
		default:
			t.Errorf("unexpected relay advertising %q", r.AdvertisedAddr())
		}
	}
}
