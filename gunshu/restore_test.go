package gunshu_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestRestore: of a saved list, only what a fresh reg would list comes
// back: a live relay, not a dead address nor one the policy denies; what
// is already registered is left alone.
func TestRestore(t *testing.T) {
	n := testnet.New(t, 2) // two live relays
	live := n.RelayAddrs()
	saved := []string{live[0], live[1], testkit.ClosedAddr(t), "10.0.0.1:7001"}

	reg := gunshu.NewMemoryRegistry(0, 0)
	m := &gunshu.Manager{Registry: reg, Policy: testnet.LoopbackPolicy(), TestTimeout: time.Second}
	if err := reg.Register(context.Background(), live[1], "127.0.0.1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := m.Restore(context.Background(), saved); got != 1 {
		t.Fatalf("Restore listed %d, want 1 (the live relay not yet registered)", got)
	}
	addrs, _ := reg.Addrs(context.Background())
	slices.Sort(addrs)
	slices.Sort(live)
	if !slices.Equal(addrs, live) {
		t.Fatalf("after Restore the manager lists %v, want %v", addrs, live)
	}
}
