// Package registrytest is the contract every gunshu.Registry keeps, as a
// test suite: the memory registry's tests and the Redis registry's run
// the same cases, so the manager may rely on either alike.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// Open returns an empty registry with caps maxServices and maxPerIP (0:
// no cap), ready to answer Addrs, and closes it when the test ends.
type Open func(t *testing.T, maxServices, maxPerIP int) gunshu.Registry

// Run runs the contract against registries from open.
func Run(t *testing.T, open Open) {
	t.Run("CapsRefreshTestsRemove", func(t *testing.T) { capsRefreshTestsRemove(t, open(t, 3, 2)) })
	t.Run("MovedService", func(t *testing.T) { movedService(t, open(t, 0, 1)) })
	t.Run("NoCaps", func(t *testing.T) { noCaps(t, open(t, 0, 0)) })
	t.Run("ConcurrentCaps", func(t *testing.T) { concurrentCaps(t, open(t, 50, 5)) })
	t.Run("NetworkCap", func(t *testing.T) {
		reg := open(t, 0, 2)
		capped, ok := reg.(interface{ SetMaxPerNetwork(int) })
		if !ok {
			t.Fatalf("%T has no SetMaxPerNetwork: it cannot cap services per network", reg)
		}
		capped.SetMaxPerNetwork(3)
		networkCap(t, reg)
	})
}

// RegisterByHost registers addr with its host as the per-IP group, as
// the manager does for a service that answered from that address.
func RegisterByHost(r gunshu.Registry, ctx context.Context, addr string, now time.Time) error {
	return r.Register(ctx, addr, HostPart(addr), now)
}

// HostPart is the host of a host:port.
func HostPart(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	return host
}

// SortedAddrs is r's Addrs, sorted.
func SortedAddrs(t testing.TB, r gunshu.Registry) []string {
	t.Helper()
	addrs, err := r.Addrs(context.Background())
	if err != nil {
		t.Fatalf("Addrs: %v", err)
	}
	slices.Sort(addrs)
	return addrs
}

// now is a time a registry stores exactly (milliseconds) and keeps for a
// while (a registry may expire services not registered for minutes).
func now() time.Time { return time.UnixMilli(time.Now().UnixMilli()) }

func capsRefreshTestsRemove(t *testing.T, r gunshu.Registry) {
	ctx := context.Background()
	t0 := now()
	for i, a := range []string{"192.0.2.1:7001", "192.0.2.1:7002", "192.0.2.2:7001"} {
		if err := RegisterByHost(r, ctx, a, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("register %s: %v", a, err)
		}
	}
	if err := RegisterByHost(r, ctx, "192.0.2.1:7003", t0); !errors.Is(err, gunshu.ErrGroupFull) && !errors.Is(err, gunshu.ErrRegistryFull) {
		t.Fatalf("fourth service: %v", err)
	}
	if err := RegisterByHost(r, ctx, "192.0.2.9:7001", t0); !errors.Is(err, gunshu.ErrRegistryFull) {
		t.Fatalf("list full: %v", err)
	}
	// Refreshing a listed service works even when full, and keeps one entry.
	if err := RegisterByHost(r, ctx, "192.0.2.1:7001", t0.Add(time.Minute)); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	services, err := r.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 3 || services[0].Addr != "192.0.2.1:7001" {
		t.Fatalf("services %+v", services)
	}
	if s := services[0]; !s.FirstSeen.Equal(t0) || !s.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("refresh changed FirstSeen or missed LastSeen: %+v", s)
	}

	// Consecutive failures count up and reset on success.
	for want := 1; want <= 3; want++ {
		n, err := r.RecordTest(ctx, "192.0.2.2:7001", false, 0, t0)
		if err != nil || n != want {
			t.Fatalf("failure %d: got %d, %v", want, n, err)
		}
	}
	if n, _ := r.RecordTest(ctx, "192.0.2.2:7001", true, time.Millisecond, t0); n != 0 {
		t.Fatalf("after success: %d failures", n)
	}
	if n, err := r.RecordTest(ctx, "192.0.2.99:7001", false, 0, t0); n != 0 || err != nil {
		t.Fatalf("unknown address: %d, %v", n, err)
	}
	services, _ = r.Services(ctx)
	if s := services[2]; !s.LastTestOK || s.LastLatency != time.Millisecond || s.Failures != 0 {
		t.Fatalf("recorded test: %+v", s)
	}

	// Remove frees the host's slot and the list's.
	if ok, _ := r.Remove(ctx, "192.0.2.1:7002"); !ok {
		t.Fatal("remove of a listed service reported false")
	}
	if ok, _ := r.Remove(ctx, "192.0.2.1:7002"); ok {
		t.Fatal("second remove reported true")
	}
	if err := RegisterByHost(r, ctx, "192.0.2.1:7003", t0); err != nil {
		t.Fatalf("host slot not freed: %v", err)
	}
	if got, want := SortedAddrs(t, r), []string{"192.0.2.1:7001", "192.0.2.1:7003", "192.0.2.2:7001"}; !slices.Equal(got, want) {
		t.Fatalf("addrs %q, want %q", got, want)
	}
}

// movedService: a refresh from another group counts in the new group, or
// is refused, and the entry dropped, when that group is full.
func movedService(t *testing.T, r gunshu.Registry) {
	ctx, t0 := context.Background(), now()
	for _, reg := range []struct{ addr, group string }{{"a.example:1", "192.0.2.1"}, {"b.example:1", "192.0.2.2"}} {
		if err := r.Register(ctx, reg.addr, reg.group, t0); err != nil {
			t.Fatalf("register %s: %v", reg.addr, err)
		}
	}
	if err := r.Register(ctx, "a.example:1", "192.0.2.3", t0); err != nil {
		t.Fatalf("moving to a free group: %v", err)
	}
	if err := r.Register(ctx, "b.example:1", "192.0.2.1", t0); err != nil {
		t.Fatalf("moving into the group the first one left: %v", err)
	}
	if err := r.Register(ctx, "b.example:1", "192.0.2.3", t0); !errors.Is(err, gunshu.ErrGroupFull) {
		t.Fatalf("moving into a full group: %v, want ErrGroupFull", err)
	}
	if got, want := SortedAddrs(t, r), []string{"a.example:1"}; !slices.Equal(got, want) {
		t.Fatalf("after a refused move: addrs %q, want %q", got, want)
	}
}

// noCaps: without caps, the empty registry answers and takes everything.
func noCaps(t *testing.T, r gunshu.Registry) {
	ctx := context.Background()
	if addrs, err := r.Addrs(ctx); err != nil || len(addrs) != 0 {
		t.Fatalf("empty: %v, %v", addrs, err)
	}
	if ok, err := r.Remove(ctx, "192.0.2.1:1"); ok || err != nil {
		t.Fatalf("remove from empty: %v, %v", ok, err)
	}
	for i := range 100 {
		if err := RegisterByHost(r, ctx, fmt.Sprintf("192.0.2.1:%d", i+1), now()); err != nil {
			t.Fatal(err)
		}
	}
	if addrs, _ := r.Addrs(ctx); len(addrs) != 100 {
		t.Fatalf("%d addrs, want 100 (no caps)", len(addrs))
	}
}

// concurrentCaps: caps hold under concurrent registrations, which is what
// the manager does.
func concurrentCaps(t *testing.T, r gunshu.Registry) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for host := range 20 {
		for port := range 10 {
			wg.Go(func() {
				_ = RegisterByHost(r, ctx, fmt.Sprintf("192.0.2.%d:%d", host+1, port+1), now())
			})
		}
	}
	wg.Wait()
	services, err := r.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 50 {
		t.Fatalf("%d services, want the cap of 50", len(services))
	}
	perHost := map[string]int{}
	for _, s := range services {
		perHost[HostPart(s.Addr)]++
	}
	for h, n := range perHost {
		if n > 5 {
			t.Fatalf("host %s has %d services, cap 5", h, n)
		}
	}
}
