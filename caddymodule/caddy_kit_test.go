package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
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
	t.Cleanup(stopCaddy)
}

// stopCaddy stops the running config and Caddy's admin endpoint with it:
// caddy.Stop alone leaves the endpoint a config started serving. A config
// that disables the endpoint shuts it down (Caddy does that on a
// goroutine of its own, which goleak waits for).
func stopCaddy() {
	_ = caddy.Load([]byte(`{"admin": {"disabled": true, "config": {"persist": false}}}`), true)
	_ = caddy.Stop()
}

// loadCaddyfile is runConfig for a Caddyfile.
func loadCaddyfile(t testing.TB, text string) { runConfig(t, adaptCaddyfile(t, text)) }

// loadCaddy runs config (JSON, with {admin} standing for a free admin
// address) with runConfig, with its storage (where entrances keep their
// guards) in a temporary directory, whose path it returns.
func loadCaddy(t *testing.T, config string) string {
	t.Helper()
	config = strings.ReplaceAll(config, "{admin}", testkit.FreeAddr(t))
	var cfg map[string]any
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	var root string
	if _, set := cfg["storage"]; !set {
		storage := testStorage(t)
		root = storage["root"].(string)
		cfg["storage"] = storage
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runConfig(t, out)
	return root
}

// testStorage is a storage config in a fresh temporary directory, so no
// test writes to the user's Caddy data directory.
func testStorage(t testing.TB) map[string]any {
	return map[string]any{"module": "file_system", "root": t.TempDir()}
}
