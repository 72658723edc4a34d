package gunshu_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestManagerRefusesResponders: a responder answers test with ok as a
// relay does, but est with an empty list with ok where a relay answers
// fail. The manager refuses to register it, and patrol drops one that got
// on the list by another way (here: straight into the registry) at its
// first test, whatever MaxFailures says.
func TestManagerRefusesResponders(t *testing.T) {
	n := testnet.New(t, 1)
	responder := testnet.EchoResponder(t)
	relay := n.Relays[0].Addr
	m := &gunshu.Manager{Registry: &gunshu.MemoryRegistry{}, Policy: testnet.LoopbackPolicy(), TestTimeout: 2 * time.Second, MaxFailures: 3}
	mgr := testnet.ServeManager(t, m)
	if got := regFrom(t, mgr, "127.0.0.1", responder); got != "fail\n" {
		t.Fatalf("registering a responder: %q, want fail", got)
	}
	if err := m.Register(context.Background(), responder); !errors.Is(err, gunshu.ErrResponder) {
		t.Fatalf("Register(responder) = %v, want gunshu.ErrResponder", err)
	}
	if got := regFrom(t, mgr, "127.0.0.1", relay); got != "ok\n" {
		t.Fatalf("registering a relay: %q, want ok", got)
	}
	ctx := context.Background()
	if err := m.Registry.Register(ctx, responder, "127.0.0.1/32", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Test(ctx, responder); !errors.Is(err, gunshu.ErrResponder) {
		t.Fatalf("Test(responder) = %v, want gunshu.ErrResponder", err)
	}
	m.PatrolOnce(ctx)
	addrs, _ := m.Registry.Addrs(ctx)
	if len(addrs) != 1 || addrs[0] != relay {
		t.Fatalf("after one patrol round the list is %v, want only the relay %s", addrs, relay)
	}
}

// commandCounter counts a relay's sessions by command.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commandCounter) SessionStarted(gunshu.Role) {}
func (c *commandCounter) SessionEnded(s gunshu.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[s.Command]++
}

func (c *commandCounter) count(cmd string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[cmd]
}

// TestPatrolProbesEveryTenthRound: patrol tests a service every round and
// sends the responder probe in the first round and every
// gunshu.PatrolProbeEvery-th after it; registration probes every time.
func TestPatrolProbesEveryTenthRound(t *testing.T) {
	var seen commandCounter
	relay := testnet.ServeRelay(t, &gunshu.Relay{Observer: &seen})
	m := &gunshu.Manager{Registry: &gunshu.MemoryRegistry{}, Policy: testnet.LoopbackPolicy(), TestTimeout: 2 * time.Second}
	ctx := context.Background()
	if err := m.Register(ctx, relay); err != nil {
		t.Fatal(err)
	}
	for range 2*gunshu.PatrolProbeEvery + 1 {
		m.PatrolOnce(ctx)
	}
	// SessionEnded runs as the relay finishes, a moment after the
	// manager read its answer: wait for the expected count.
	deadline := time.Now().Add(5 * time.Second)
	for (seen.count(gunshu.CmdTest) < 2*gunshu.PatrolProbeEvery+2 || seen.count(gunshu.CmdEst) < 4) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if tests, probes := seen.count(gunshu.CmdTest), seen.count(gunshu.CmdEst); tests != 2*gunshu.PatrolProbeEvery+2 || probes != 4 {
		t.Fatalf("the relay answered %d tests and %d probes, want %d and 4 (registration, rounds 1, 11 and 21)", tests, probes, 2*gunshu.PatrolProbeEvery+2)
	}
}

// TestEntranceVetsItsGuard: where the manager did list a responder as a
// relay (a manager that does not probe), an initiator with guards probes
// a new guard before its first route: a responder there is dropped and
// left out of routes, with a warning, and no stream reaches the wrong
// site. A relay is vetted once and kept.
func TestEntranceVetsItsGuard(t *testing.T) {
	// A manager that lists without verifying: it takes the impostor.
	m := &gunshu.Manager{Registry: &gunshu.MemoryRegistry{}, Policy: testnet.LoopbackPolicy(), DisableVerify: true}
	mgr := testnet.ServeManager(t, m)
	target := testnet.EchoResponder(t)
	impostor := testnet.EchoResponder(t) // any responder: it answers ok
	ctx := context.Background()
	if err := gunshu.Register(ctx, mgr, impostor, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	store := &gunshu.MemoryGuardStore{}
	d := &gunshu.Dialer{Manager: mgr}
	d.Guards = &gunshu.Guards{Store: store}
	d.ListTTL = -1 // a list per route: the relay added below is seen at once
	d.Logger = zap.New(core)
	if _, err := d.Establish(ctx, target); !errors.Is(err, gunshu.ErrNoRelays) {
		t.Fatalf("with only the impostor listed: %v, want gunshu.ErrNoRelays", err)
	}
	if got := logs.FilterMessageSnippet("answered as a responder").Len(); got != 1 {
		t.Errorf("%d warnings about the impostor, want 1", got)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), impostor) {
			t.Errorf("a warning names the first hop: %v", e)
		}
	}
	if !d.Guards.IsResponder(impostor) || len(d.Guards.Current()) != 0 {
		t.Fatalf("guards %v; impostor left out %v", d.Guards.Current(), d.Guards.IsResponder(impostor))
	}
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
	if err := gunshu.Register(ctx, mgr, relay, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := d.Establish(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Conn.Close()
	if got := d.Guards.Current(); len(got) != 1 || got[0] != relay {
		t.Fatalf("guards %v, want the relay %s", got, relay)
	}
	if stored, _ := store.Load(ctx); !strings.Contains(string(stored), `"vetted":true`) {
		t.Errorf("the stored guard is not vetted: %s", stored)
	}
}
