package gunshu

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestRestore: of a saved list, only what a fresh reg would list comes
// back: a live relay, not a dead address nor one the policy denies; what
// is already registered is left alone.
func TestRestore(t *testing.T) {
	n := newTestNet(t, 2) // two live relays, registered with n's manager
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	saved := []string{n.relays[0].addr, n.relays[1].addr, deadAddr, "10.0.0.1:7001"}

	reg := NewMemoryRegistry(0, 0)
	m := &Manager{Registry: reg, Policy: loopbackPolicy(), TestTimeout: time.Second}
	if err := reg.Register(context.Background(), n.relays[1].addr, "127.0.0.1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := m.Restore(context.Background(), saved); got != 1 {
		t.Fatalf("Restore listed %d, want 1 (the live relay not yet registered)", got)
	}
	addrs, _ := reg.Addrs(context.Background())
	slices.Sort(addrs)
	want := []string{n.relays[0].addr, n.relays[1].addr}
	slices.Sort(want)
	if !slices.Equal(addrs, want) {
		t.Fatalf("after Restore the manager lists %v, want %v", addrs, want)
	}
}
