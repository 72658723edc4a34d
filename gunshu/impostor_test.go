package gunshu

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestManagerRefusesResponders: a responder answers test with ok as a
// relay does, but est with an empty list with ok where a relay answers
// fail. The manager refuses to register it, and patrol drops one that got
// on the list by another way (here: straight into the registry) at its
// first test, whatever MaxFailures says.
func TestManagerRefusesResponders(t *testing.T) {
	n := newTestNet(t, 1)
	defer n.close()
	responder := n.echoResponder(t)
	relay := n.relays[0].addr
	m := &Manager{Registry: &MemoryRegistry{}, Policy: loopbackPolicy(), TestTimeout: 2 * time.Second, MaxFailures: 3}
	mgr := serveManager(t, m)
	if got := regFrom(t, mgr, "127.0.0.1", responder); got != "fail\n" {
		t.Fatalf("registering a responder: %q, want fail", got)
	}
	if err := m.Register(context.Background(), responder); !errors.Is(err, ErrResponder) {
		t.Fatalf("Register(responder) = %v, want ErrResponder", err)
	}
	if got := regFrom(t, mgr, "127.0.0.1", relay); got != "ok\n" {
		t.Fatalf("registering a relay: %q, want ok", got)
	}
	ctx := context.Background()
	if err := m.Registry.Register(ctx, responder, "127.0.0.1/32", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Test(ctx, responder); !errors.Is(err, ErrResponder) {
		t.Fatalf("Test(responder) = %v, want ErrResponder", err)
	}
	m.PatrolOnce(ctx)
	addrs, _ := m.Registry.Addrs(ctx)
	if len(addrs) != 1 || addrs[0] != relay {
		t.Fatalf("after one patrol round the list is %v, want only the relay %s", addrs, relay)
	}
}
