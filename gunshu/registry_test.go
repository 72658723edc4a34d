package gunshu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestMemoryRegistry(t *testing.T) {
	ctx := context.Background()
	r := NewMemoryRegistry(3, 2)
	t0 := time.Unix(1000, 0)
	for i, a := range []string{"192.0.2.1:7001", "192.0.2.1:7002", "192.0.2.2:7001"} {
		if err := registerByHost(r, ctx, a, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("register %s: %v", a, err)
		}
	}
	if err := registerByHost(r, ctx, "192.0.2.1:7003", t0); !errors.Is(err, ErrGroupFull) && !errors.Is(err, ErrRegistryFull) {
		t.Fatalf("fourth service: %v", err)
	}
	if err := registerByHost(r, ctx, "192.0.2.9:7001", t0); !errors.Is(err, ErrRegistryFull) {
		t.Fatalf("list full: %v", err)
	}
	// Refreshing a listed service works even when full, and keeps one entry.
	if err := registerByHost(r, ctx, "192.0.2.1:7001", t0.Add(time.Hour)); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	services, _ := r.Services(ctx)
	if len(services) != 3 || services[0].Addr != "192.0.2.1:7001" {
		t.Fatalf("services %+v", services)
	}
	if s := services[0]; !s.FirstSeen.Equal(t0) || !s.LastSeen.Equal(t0.Add(time.Hour)) {
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
	if err := registerByHost(r, ctx, "192.0.2.1:7003", t0); err != nil {
		t.Fatalf("host slot not freed: %v", err)
	}
	addrs, _ := r.Addrs(ctx)
	slices.Sort(addrs)
	if want := []string{"192.0.2.1:7001", "192.0.2.1:7003", "192.0.2.2:7001"}; !slices.Equal(addrs, want) {
		t.Fatalf("addrs %q, want %q", addrs, want)
	}
}

func TestMemoryRegistryZeroValue(t *testing.T) {
	ctx := context.Background()
	r := &MemoryRegistry{}
	if addrs, err := r.Addrs(ctx); err != nil || len(addrs) != 0 {
		t.Fatalf("empty: %v, %v", addrs, err)
	}
	if ok, err := r.Remove(ctx, "192.0.2.1:1"); ok || err != nil {
		t.Fatalf("remove from empty: %v, %v", ok, err)
	}
	for i := range 100 {
		if err := registerByHost(r, ctx, fmt.Sprintf("192.0.2.1:%d", i+1), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if addrs, _ := r.Addrs(ctx); len(addrs) != 100 {
		t.Fatalf("%d addrs, want 100 (no caps)", len(addrs))
	}
}

// TestMemoryRegistryConcurrentCaps: caps hold under concurrent
// registrations, which is what the manager does.
func TestMemoryRegistryConcurrentCaps(t *testing.T) {
	ctx := context.Background()
	r := NewMemoryRegistry(50, 5)
	var wg sync.WaitGroup
	for host := range 20 {
		for port := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = registerByHost(r, ctx, fmt.Sprintf("192.0.2.%d:%d", host+1, port+1), time.Now())
			}()
		}
	}
	wg.Wait()
	services, _ := r.Services(ctx)
	if len(services) != 50 {
		t.Fatalf("%d services, want the cap of 50", len(services))
	}
	perHost := map[string]int{}
	for _, s := range services {
		perHost[hostPart(s.Addr)]++
	}
	for h, n := range perHost {
		if n > 5 {
			t.Fatalf("host %s has %d services, cap 5", h, n)
		}
	}
}

// registerByHost registers addr with its host as the per-IP group, as the
// manager does for a service that answered from that address.
func registerByHost(r *MemoryRegistry, ctx context.Context, addr string, now time.Time) error {
	return r.Register(ctx, addr, hostPart(addr), now)
}

func hostPart(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	return host
}
