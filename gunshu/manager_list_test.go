package gunshu_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// brokenRegistry fails every read, like a shared store that is down.
type brokenRegistry struct{ gunshu.MemoryRegistry }

func (*brokenRegistry) Addrs(context.Context) ([]string, error) {
	return nil, errors.New("store unreachable")
}

// TestManagerListFailsWhenRegistryFails: an unreadable registry is not an
// empty network, so list answers fail rather than "0".
func TestManagerListFailsWhenRegistryFails(t *testing.T) {
	mgr := testnet.ServeManager(t, &gunshu.Manager{Registry: &brokenRegistry{}})
	if got := exchange(t, mgr, "list\n"); got != "fail\n" {
		t.Fatalf("got %q, want %q", got, "fail\n")
	}
}

// TestManagerListCappedAtMaxList: the list a manager sends never holds
// more entries than an initiator with the same limit accepts.
func TestManagerListCappedAtMaxList(t *testing.T) {
	m := &gunshu.Manager{Registry: &gunshu.MemoryRegistry{}, MessageLimits: gunshu.MessageLimits{MaxList: 3}}
	for i := range 10 {
		if err := m.Registry.Register(context.Background(), fmt.Sprintf("192.0.2.%d:7001", i+1), "", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	mgr := testnet.ServeManager(t, m)
	got := exchange(t, mgr, "list\n")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if lines[0] != "3" || len(lines) != 4 {
		t.Fatalf("got %q, want 3 entries", got)
	}
	list, err := gunshu.FetchList(context.Background(), mgr, time.Second, gunshu.MessageLimits{MaxList: 3})
	if err != nil || len(list) != 3 {
		t.Fatalf("FetchList: %q, %v", list, err)
	}
}

// TestRegistrar: a registrar registers with every manager it can reach,
// reports the ones it cannot, and stops when its context ends.
func TestRegistrar(t *testing.T) {
	m := &gunshu.Manager{Policy: testnet.LoopbackPolicy(), TestTimeout: time.Second}
	mgr := testnet.ServeManager(t, m)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
	dead := testkit.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()

	r := &gunshu.Registrar{
		Managers:   []string{mgr, deadAddr},
		Advertise:  relay,
		Interval:   50 * time.Millisecond,
		Timeout:    time.Second,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	testkit.Eventually(t, 3*time.Second, "no second registration", func() bool {
		st := r.Status()
		return st[0].Successes >= 2 && st[1].Error != ""
	})
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not stop with its context")
	}
	st := r.Status()
	if !st[0].OK || st[0].Manager != mgr {
		t.Errorf("reachable manager: %+v", st[0])
	}
	if st[1].OK || st[1].Successes != 0 {
		t.Errorf("dead manager: %+v", st[1])
	}
	addrs, _ := m.Registry.Addrs(context.Background())
	if len(addrs) != 1 || addrs[0] != relay {
		t.Fatalf("manager lists %q, want [%s]", addrs, relay)
	}
}
