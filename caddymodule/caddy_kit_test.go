package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// How this package's tests run a config in this process's Caddy. The
// networks they load (exampleNet, opsNet, reloadNet, and the configs of
// single tests) all go through these.

// adaptCaddyfile adapts text to JSON, failing the test on an error.
func adaptCaddyfile(t testing.TB, text string) []byte {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, text)
	}
	return cfg
}

// runConfig loads cfg (JSON) into Caddy, and stops Caddy when the test
// ends. Loading again is a reload.
func runConfig(t testing.TB, cfg []byte) {
	t.Helper()
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

// loadCaddyfile is runConfig for a Caddyfile.
func loadCaddyfile(t testing.TB, text string) { runConfig(t, adaptCaddyfile(t, text)) }
