package caddymodule

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// exampleNet is Caddyfile.example running in this process, its fixed
// ports swapped for free ones so the test cannot collide with anything
// else on the machine.
type exampleNet struct {
	t         *testing.T
	caddyfile string
	ports     map[string]string // example port -> port in use
}

func newExampleNet(t *testing.T) *exampleNet {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	n := &exampleNet{t: t, caddyfile: string(src), ports: map[string]string{}}
	for _, p := range attacks.ExamplePorts {
		n.ports[p] = testkit.FreePort(t)
	}
	return n
}

// addr is the address the example's 127.0.0.1:<port> now has.
func (n *exampleNet) addr(examplePort string) string {
	return "127.0.0.1:" + n.ports[examplePort]
}

// config adapts the Caddyfile, edited by edit, with the ports swapped and
// the admin endpoint off.
func (n *exampleNet) config(edit func(string) string) []byte {
	n.t.Helper()
	text := n.caddyfile
	if edit != nil {
		text = edit(text)
	}
	text = attacks.SwapPorts(text, n.ports)
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfgJSON, warnings, err := adapter.Adapt([]byte(text), map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		n.t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	if len(warnings) > 0 {
		n.t.Fatalf("adapting Caddyfile.example: warnings %v", warnings)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		n.t.Fatal(err)
	}
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	cfg["storage"] = testStorage(n.t)
	out, err := json.Marshal(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// load runs the (edited) example; the first load registers a cleanup that
// stops Caddy.
func (n *exampleNet) load(edit func(string) string) {
	n.t.Helper()
	runConfig(n.t, n.config(edit))
}

// list asks the example's manager for its list, sorted.
func (n *exampleNet) list() ([]string, error) {
	l, err := gunshu.FetchList(context.Background(), n.addr("7000"), 2*time.Second, gunshu.MessageLimits{})
	slices.Sort(l)
	return l, err
}

// waitList waits until the manager lists exactly want, within 10 s.
func (n *exampleNet) waitList(want ...string) {
	n.t.Helper()
	testnet.WaitListed(n.t, n.addr("7000"), want, 10*time.Second)
}

func (n *exampleNet) relays() []string {
	return []string{n.addr("7001"), n.addr("7002"), n.addr("7003")}
}
