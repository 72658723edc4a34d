package redisregistry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/registrytest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// newRegistry opens a Registry on srv, closed when the test ends.
func newRegistry(t testing.TB, srv *redistest.Server, o Options) *Registry {
	t.Helper()
	o.Redis.Addrs = []string{srv.Addr}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = 100 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	r := New(o)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// TestContract runs the registry contract against Redis, each case on
// keys of its own.
func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	var cases atomic.Int64
	registrytest.Run(t, func(t *testing.T, maxServices, maxPerIP int) gunshu.Registry {
		r := newRegistry(t, srv, Options{KeyPrefix: fmt.Sprintf("contract%d:", cases.Add(1)), MaxServices: maxServices, MaxPerIP: maxPerIP})
		testkit.Eventually(t, 5*time.Second, "the first snapshot", func() bool {
			_, err := r.Addrs(context.Background())
			return err == nil
		})
		return r
	})
}

// TestOwnChangesSurviveRefreshes: a manager lists what it registered, and
// stops listing what it removed, at once, even when a refresh that read
// Redis just before the change answers just after it (a refresh every
// millisecond makes that common: it lost 1 of 100 under load before).
func TestOwnChangesSurviveRefreshes(t *testing.T) {
	srv := redistest.Start(t)
	r := newRegistry(t, srv, Options{KeyPrefix: "own:", SnapshotInterval: time.Millisecond})
	ctx := context.Background()
	testkit.Eventually(t, 5*time.Second, "the first snapshot", func() bool {
		_, err := r.Addrs(ctx)
		return err == nil
	})
	for i := range 300 {
		addr := fmt.Sprintf("192.0.2.1:%d", i+1)
		if err := r.Register(ctx, addr, "192.0.2.1", time.Now()); err != nil {
			t.Fatal(err)
		}
		if addrs, _ := r.Addrs(ctx); !slices.Contains(addrs, addr) {
			t.Fatalf("registration %d: %s is not listed right after it", i, addr)
		}
		if i%2 == 1 {
			continue
		}
		if _, err := r.Remove(ctx, addr); err != nil {
			t.Fatal(err)
		}
		if addrs, _ := r.Addrs(ctx); slices.Contains(addrs, addr) {
			t.Fatalf("removal %d: %s is still listed right after it", i, addr)
		}
	}
}

func TestRegisterRefreshRemove(t *testing.T) {
	srv := redistest.Start(t)
	r := newRegistry(t, srv, Options{KeyPrefix: "t1:"})
	ctx := context.Background()
	t0 := time.UnixMilli(time.Now().UnixMilli())
	if err := r.Register(ctx, "127.0.0.1:7001", registrytest.HostPart("127.0.0.1:7001"), t0); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx, "127.0.0.1:7001", registrytest.HostPart("127.0.0.1:7001"), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := registrytest.SortedAddrs(t, r); !slices.Equal(got, []string{"127.0.0.1:7001"}) {
		t.Fatalf("Addrs after a refresh = %v, want the one address once", got)
	}
	svcs, err := r.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || !svcs[0].FirstSeen.Equal(t0) || !svcs[0].LastSeen.Equal(t0.Add(time.Second)) {
		t.Fatalf("Services = %+v, want first %v last %v", svcs, t0, t0.Add(time.Second))
	}
	// The keys share the hash tag that keeps them in one Cluster slot.
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	if n, err := raw.ZCard(ctx, "{t1:}seen").Result(); err != nil || n != 1 {
		t.Fatalf("ZCARD {t1:}seen = %d, %v; want 1", n, err)
	}
	if removed, err := r.Remove(ctx, "127.0.0.1:7001"); err != nil || !removed {
		t.Fatalf("Remove = %v, %v; want true", removed, err)
	}
	if removed, err := r.Remove(ctx, "127.0.0.1:7001"); err != nil || removed {
		t.Fatalf("second Remove = %v, %v; want false", removed, err)
	}
	if got := registrytest.SortedAddrs(t, r); len(got) != 0 {
		t.Fatalf("Addrs after Remove = %v", got)
	}
	if n, err := raw.HLen(ctx, "{t1:}hosts").Result(); err != nil || n != 0 {
		t.Fatalf("per-IP group counts left after Remove: %d, %v", n, err)
	}
}

func TestCapsAndSharedFailures(t *testing.T) {
	srv := redistest.Start(t)
	a := newRegistry(t, srv, Options{KeyPrefix: "t2:", MaxServices: 3, MaxPerIP: 2})
	b := newRegistry(t, srv, Options{KeyPrefix: "t2:", MaxServices: 3, MaxPerIP: 2})
	ctx, now := context.Background(), time.Now()
	for _, addr := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		if err := a.Register(ctx, addr, registrytest.HostPart(addr), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Register(ctx, "127.0.0.1:3", registrytest.HostPart("127.0.0.1:3"), now); !errors.Is(err, gunshu.ErrGroupFull) {
		t.Fatalf("third service on one host: %v, want ErrGroupFull", err)
	}
	if err := b.Register(ctx, "[::1]:1", registrytest.HostPart("[::1]:1"), now); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx, "[::1]:2", registrytest.HostPart("[::1]:2"), now); !errors.Is(err, gunshu.ErrRegistryFull) {
		t.Fatalf("fourth service: %v, want ErrRegistryFull", err)
	}
	if err := b.Register(ctx, "127.0.0.1:1", registrytest.HostPart("127.0.0.1:1"), now); err != nil {
		t.Fatalf("refreshing a registered service in a full registry: %v", err)
	}

	// Failures are counted in Redis, whichever manager tested.
	for i, r := range []*Registry{a, b, a} {
		n, err := r.RecordTest(ctx, "127.0.0.1:1", false, 0, now)
		if err != nil || n != i+1 {
			t.Fatalf("failure %d: count %d, %v", i+1, n, err)
		}
	}
	if n, err := b.RecordTest(ctx, "127.0.0.1:1", true, 3*time.Millisecond, now); err != nil || n != 0 {
		t.Fatalf("success: count %d, %v; want 0", n, err)
	}
	if n, err := b.RecordTest(ctx, "127.0.0.1:9", false, 0, now); err != nil || n != 0 {
		t.Fatalf("test of an unregistered address: %d, %v; want 0, nil", n, err)
	}
	svcs, err := a.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 3 || svcs[0].Addr != "127.0.0.1:1" || !svcs[0].LastTestOK || svcs[0].LastLatency != 3*time.Millisecond {
		t.Fatalf("Services = %+v", svcs)
	}

	// Lowering the caps applies to the next registration.
	if _, err := a.Remove(ctx, "[::1]:1"); err != nil {
		t.Fatal(err)
	}
	a.SetLimits(2, 0)
	if err := a.Register(ctx, "[::1]:1", registrytest.HostPart("[::1]:1"), now); !errors.Is(err, gunshu.ErrRegistryFull) {
		t.Fatalf("after SetLimits(2, 0): %v, want ErrRegistryFull", err)
	}
}

func TestSnapshotSharedAndExpired(t *testing.T) {
	srv := redistest.Start(t)
	a := newRegistry(t, srv, Options{KeyPrefix: "t3:", ExpireAfter: time.Minute, MaxPerIP: 1})
	b := newRegistry(t, srv, Options{KeyPrefix: "t3:", ExpireAfter: time.Minute})
	ctx := context.Background()
	if err := a.Register(ctx, "127.0.0.2:1", registrytest.HostPart("127.0.0.2:1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	// Registered long ago: the next refresh expires it.
	if err := a.Register(ctx, "127.0.0.3:1", registrytest.HostPart("127.0.0.3:1"), time.Now().Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Second, "b lists a's live registration only", func() bool {
		return slices.Equal(registrytest.SortedAddrs(t, b), []string{"127.0.0.2:1"})
	})
	testkit.Eventually(t, time.Second, "a drops the expired one from its snapshot", func() bool {
		return slices.Equal(registrytest.SortedAddrs(t, a), []string{"127.0.0.2:1"})
	})
	// The expired service no longer counts against its host's cap.
	if err := a.Register(ctx, "127.0.0.3:2", registrytest.HostPart("127.0.0.3:2"), time.Now()); err != nil {
		t.Fatalf("registering on the host of an expired service: %v", err)
	}
	if age, err := b.SnapshotAge(); err != nil || age > time.Second {
		t.Fatalf("SnapshotAge = %v, %v", age, err)
	}
}

func TestClaimPatrolShards(t *testing.T) {
	srv := redistest.Start(t)
	a := newRegistry(t, srv, Options{KeyPrefix: "t4:"})
	b := newRegistry(t, srv, Options{KeyPrefix: "t4:"})
	ctx := context.Background()
	var addrs []string
	for i := range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 1000+i)
		if err := a.Register(ctx, addr, registrytest.HostPart(addr), time.Now()); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, addr)
	}
	const interval = time.Second
	claim := func(r *Registry) []string {
		t.Helper()
		got, err := r.ClaimPatrol(ctx, addrs, interval)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := claim(a); len(got) != len(addrs) {
		t.Fatalf("a alone claims %d of %d", len(got), len(addrs))
	}
	shareB := claim(b)
	shareA := claim(a)
	if len(shareA) == 0 || len(shareB) == 0 || len(shareA)+len(shareB) != len(addrs) {
		t.Fatalf("shares of 100: a %d, b %d; want two non-empty parts", len(shareA), len(shareB))
	}
	for _, addr := range shareA {
		if slices.Contains(shareB, addr) {
			t.Fatalf("%s claimed by both", addr)
		}
	}
	// b stops cleanly: a takes everything at once.
	_ = b.Close()
	if got := claim(a); len(got) != len(addrs) {
		t.Fatalf("after b closed a claims %d of %d", len(got), len(addrs))
	}
	// c dies without leaving: a takes everything when c's heartbeat lapses.
	c := newRegistry(t, srv, Options{KeyPrefix: "t4:"})
	claim(c)
	if got := claim(a); len(got) == len(addrs) {
		t.Fatal("a claims everything while c patrols")
	}
	_ = c.client.Close()
	testkit.Eventually(t, 3*c.heartbeatTTL(), "a takes over the share of a dead manager", func() bool {
		return len(claim(a)) == len(addrs)
	})
}

func TestRedisDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	core, logs := observer.New(zap.InfoLevel)
	var maxAge atomic.Int64 // the largest snapshot age reported while down
	r := newRegistry(t, srv, Options{KeyPrefix: "t5:", Timeout: 500 * time.Millisecond, Logger: zap.New(core),
		OnRefresh: func(err error, age time.Duration) {
			if err != nil && int64(age) > maxAge.Load() {
				maxAge.Store(int64(age))
			}
		}})
	ctx := context.Background()
	if err := r.Register(ctx, "127.0.0.1:1", registrytest.HostPart("127.0.0.1:1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	if err := r.Register(ctx, "127.0.0.1:2", registrytest.HostPart("127.0.0.1:2"), time.Now()); err == nil {
		t.Fatal("Register succeeded with Redis down")
	}
	if _, err := r.ClaimPatrol(ctx, []string{"127.0.0.1:1"}, time.Second); err == nil {
		t.Fatal("ClaimPatrol succeeded with Redis down")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing with Redis down took %v, past the 500ms timeouts", d)
	}
	testkit.Eventually(t, time.Second, "the refresher notices Redis is down", func() bool {
		_, err := r.SnapshotAge()
		return err != nil
	})
	if got := registrytest.SortedAddrs(t, r); !slices.Equal(got, []string{"127.0.0.1:1"}) {
		t.Fatalf("stale Addrs = %v", got)
	}
	testkit.Eventually(t, time.Second, "the metric hook sees the snapshot age", func() bool {
		return maxAge.Load() >= int64(200*time.Millisecond)
	})
	if n := logs.FilterMessageSnippet("list answers from the last snapshot").Len(); n != 1 {
		t.Fatalf("%d warnings of the outage, want 1 (at the change only)", n)
	}
	srv.Restart()
	testkit.Eventually(t, 2*time.Second, "an empty Redis empties the snapshot", func() bool {
		_, err := r.SnapshotAge()
		return err == nil && len(registrytest.SortedAddrs(t, r)) == 0
	})
	if err := r.Register(ctx, "127.0.0.1:2", registrytest.HostPart("127.0.0.1:2"), time.Now()); err != nil {
		t.Fatalf("Register after Redis came back: %v", err)
	}
	if got := registrytest.SortedAddrs(t, r); !slices.Equal(got, []string{"127.0.0.1:2"}) {
		t.Fatalf("Addrs = %v", got)
	}
	back := logs.FilterMessage("redis registry reachable again").All()
	if len(back) != 1 || back[0].ContextMap()["snapshot_was_stale_for"].(time.Duration) < 200*time.Millisecond {
		t.Fatalf("recovery logs: %+v", back)
	}
}

func TestNoSnapshotYet(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	r := newRegistry(t, srv, Options{Timeout: 300 * time.Millisecond})
	if _, err := r.Addrs(context.Background()); err == nil {
		t.Fatal("Addrs answered without ever reaching Redis")
	}
}

// In a Cluster every script touches keys of one slot, thanks to the hash
// tag; a key outside it would fail with CROSSSLOT.
func TestCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr)
	}
	open := func() *Registry {
		r := New(Options{Redis: redis.UniversalOptions{Addrs: addrs}, KeyPrefix: "cluster:",
			SnapshotInterval: 100 * time.Millisecond, Timeout: 2 * time.Second, MaxPerIP: 1})
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	a, b := open(), open()
	ctx, now := context.Background(), time.Now()
	if err := a.Register(ctx, "127.0.0.1:1", "127.0.0.1", now); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if err := b.Register(ctx, "127.0.0.1:2", "127.0.0.1", now); !errors.Is(err, gunshu.ErrGroupFull) {
		t.Fatalf("second service of one IP: %v, want ErrGroupFull", err)
	}
	if err := b.Register(ctx, "127.0.0.2:1", "127.0.0.2", now); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:1", "127.0.0.2:1"}
	testkit.Eventually(t, 2*time.Second, "both list both services", func() bool {
		return slices.Equal(registrytest.SortedAddrs(t, a), want) && slices.Equal(registrytest.SortedAddrs(t, b), want)
	})
	if n, err := a.RecordTest(ctx, "127.0.0.2:1", false, 0, now); err != nil || n != 1 {
		t.Fatalf("RecordTest: %d, %v", n, err)
	}
	if svcs, err := b.Services(ctx); err != nil || len(svcs) != 2 || svcs[1].Failures != 1 {
		t.Fatalf("Services: %+v, %v", svcs, err)
	}
	_, errA := a.ClaimPatrol(ctx, want, time.Second) // a joins patrol
	shareB, errB := b.ClaimPatrol(ctx, want, time.Second)
	shareA, errA2 := a.ClaimPatrol(ctx, want, time.Second)
	if errA != nil || errB != nil || errA2 != nil || len(shareA)+len(shareB) != 2 {
		t.Fatalf("ClaimPatrol: %v %v (%v, %v, %v)", shareA, shareB, errA, errB, errA2)
	}
	if removed, err := b.Remove(ctx, "127.0.0.1:1"); err != nil || !removed {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
}

// With a Sentinel the client finds the master by name.
func TestSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "gunshu-master")
	a := New(Options{Redis: redis.UniversalOptions{Addrs: []string{sentinel.Addr}, MasterName: "gunshu-master"},
		KeyPrefix: "sentinel:", Timeout: 2 * time.Second})
	t.Cleanup(func() { _ = a.Close() })
	if err := a.Register(context.Background(), "127.0.0.1:1", "127.0.0.1", time.Now()); err != nil {
		t.Fatalf("Register through the Sentinel: %v", err)
	}
	raw := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer raw.Close()
	if n, err := raw.ZCard(context.Background(), "{sentinel:}seen").Result(); err != nil || n != 1 {
		t.Fatalf("the master holds %d services (%v), want 1", n, err)
	}
}
