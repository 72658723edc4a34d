package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestMemoryRegistrySurvivesRestart: a manager keeps its list in a
// snapshot in Caddy's storage; started again on the same storage, it
// lists again the saved relays that still answer test — before any of
// them registers again — and not the one that died meanwhile.
func TestMemoryRegistrySurvivesRestart(t *testing.T) {
	// Cleanups run last first: this one after caddy.Stop below.
	t.Cleanup(func() { snapshotInterval, loadSnapshots = 2*time.Second, false })
	snapshotInterval, loadSnapshots = 20*time.Millisecond, true
	var relays []string
	var lns []net.Listener
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		go func() { _ = (&gunshu.Relay{}).Serve(ln) }()
		relays = append(relays, ln.Addr().String())
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	slices.Sort(relays)
	storage := t.TempDir()
	manager := testkit.FreeAddr(t)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"storage": {"module": "file_system", "root": %q},
		"apps": {
			"gunshu": {"managers": {"default": {"allow": ["127.0.0.0/8"], "max_per_ip": 0, "patrol_interval": "1h"}}},
			"layer4": {"servers": {
				"manager": {"listen": [%q], "routes": [{"handle": [{"handler": "gunshu_manager"}]}]}
			}}
		}
	}`, storage, manager)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopCaddy)
	for _, r := range relays {
		if err := gunshu.Register(context.Background(), manager, r, 5*time.Second); err != nil {
			t.Fatalf("registering %s: %v", r, err)
		}
	}
	snapshot := filepath.Join(storage, "gunshu", "registries", "default.json")
	waitSnapshot := func(want []string) {
		t.Helper()
		var got snapshotFile
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			data, err := os.ReadFile(snapshot)
			if err == nil && json.Unmarshal(data, &got) == nil && slices.Equal(got.Services, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("snapshot holds %v, want %v", got.Services, want)
			}
		}
	}
	waitSnapshot(relays)

	// A restart, as after a crash: the process's pools are gone, the
	// storage is not. One relay died meanwhile.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	lns[0].Close()
	dead := lns[0].Addr().String()
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	want := slices.DeleteFunc(slices.Clone(relays), func(a string) bool { return a == dead })
	testnet.WaitListed(t, manager, want, 10*time.Second)
	waitSnapshot(want)
}
