package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestGunshuNetwork: a layer4 server on gunshu/<address> serves like one
// on plain TCP, and the app warns about the one on plain TCP only, naming
// its address.
func TestGunshuNetwork(t *testing.T) {
	kept, plain := testkit.FreeAddr(t), testkit.FreeAddr(t)
	logFile := filepath.Join(t.TempDir(), "log.json")
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"logging": {"logs": {"default": {"writer": {"output": "file", "filename": %q}, "encoder": {"format": "json"}}}},
		"apps": {
			"gunshu": {},
			"layer4": {"servers": {
				"kept": {"listen": ["gunshu/%s"], "routes": [{"handle": [{"handler": "gunshu_relay"}]}]},
				"plain": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_relay"}]}]}
			}}
		}
	}`, logFile, kept, plain)
	runConfig(t, []byte(cfg))
	for _, addr := range []string{kept, plain} {
		if _, err := gunshu.Ping(context.Background(), addr, 5*time.Second); err != nil {
			t.Fatalf("test of %s: %v", addr, err)
		}
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && strings.Contains(fmt.Sprint(e["msg"]), "plain TCP") {
			warned = append(warned, fmt.Sprint(e["listen"]))
		}
	}
	if len(warned) != 1 || warned[0] != plain {
		t.Fatalf("warned about %v, want only the plain TCP server %s", warned, plain)
	}
}
