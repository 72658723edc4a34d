package redisregistry

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/registrytest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// benchManager serves a manager on reg until the benchmark ends.
func benchManager(b *testing.B, reg gunshu.Registry) string {
	b.Helper()
	m := &gunshu.Manager{Registry: reg, Policy: testnet.LoopbackPolicy(), DisableVerify: true}
	ln := testkit.Listen(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Serve(ln)
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// serviceAddr is the i-th of many distinct loopback service addresses.
func serviceAddr(i int) string {
	return fmt.Sprintf("127.%d.%d.%d:%d", 1+i/(250*250)%250, 1+i/250%250, 1+i%250, 1024+i%50000)
}

// BenchmarkList answers list of 1,000 services over loopback TCP, from a
// MemoryRegistry and from the Redis registry's snapshot, in the same run.
func BenchmarkList(b *testing.B) {
	const services = 1000
	srv := redistest.Start(b)
	mem := gunshu.NewMemoryRegistry(0, 0)
	red := newRegistry(b, srv, Options{KeyPrefix: "bench-list:", SnapshotInterval: DefaultSnapshotInterval})
	ctx := context.Background()
	for i := range services {
		for _, r := range []gunshu.Registry{mem, red} {
			if err := r.Register(ctx, serviceAddr(i), registrytest.HostPart(serviceAddr(i)), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		reg  gunshu.Registry
	}{{"memory", mem}, {"redis", red}} {
		addr := benchManager(b, bc.reg)
		b.Run(bc.name, func(b *testing.B) {
			var short atomic.Int64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					list, err := gunshu.FetchList(ctx, addr, 5*time.Second, gunshu.MessageLimits{})
					if err != nil {
						b.Error(err)
						return
					}
					if len(list) != services {
						short.Add(1)
					}
				}
			})
			if n := short.Load(); n > 0 {
				b.Fatalf("%d lists lacked services", n)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lists/s")
		})
	}
}

// BenchmarkRegister registers distinct services (verification off) over
// loopback TCP with one manager, on a MemoryRegistry and on Redis.
func BenchmarkRegister(b *testing.B) {
	srv := redistest.Start(b)
	var round atomic.Int64
	for _, bc := range []struct {
		name string
		reg  func() gunshu.Registry
	}{
		{"memory", func() gunshu.Registry { return gunshu.NewMemoryRegistry(0, 0) }},
		{"redis", func() gunshu.Registry {
			return newRegistry(b, srv, Options{KeyPrefix: fmt.Sprintf("bench-reg-%d:", round.Add(1))})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := benchManager(b, bc.reg())
			var next atomic.Int64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					svc := serviceAddr(int(next.Add(1)))
					if err := gunshu.Register(context.Background(), addr, svc, 5*time.Second); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "regs/s")
		})
	}
}

// BenchmarkAddrs is the registry's part of list, in process: the map of a
// MemoryRegistry against the copy of the Redis registry's snapshot.
func BenchmarkAddrs(b *testing.B) {
	const services = 1000
	srv := redistest.Start(b)
	mem := gunshu.NewMemoryRegistry(0, 0)
	red := newRegistry(b, srv, Options{KeyPrefix: "bench-addrs:", SnapshotInterval: DefaultSnapshotInterval})
	ctx := context.Background()
	for i := range services {
		for _, r := range []gunshu.Registry{mem, red} {
			if err := r.Register(ctx, serviceAddr(i), registrytest.HostPart(serviceAddr(i)), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		reg  gunshu.Registry
	}{{"memory", mem}, {"redis", red}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if addrs, err := bc.reg.Addrs(ctx); err != nil || len(addrs) != services {
					b.Fatalf("%d addresses, %v", len(addrs), err)
				}
			}
		})
	}
}

// BenchmarkListSideBySide alternates list requests to a manager on a
// MemoryRegistry and one on the Redis registry (1,000 services each), so
// that both see the same load on a shared machine, and reports each side's
// mean time per list and their ratio.
func BenchmarkListSideBySide(b *testing.B) {
	const services = 1000
	srv := redistest.Start(b)
	mem := gunshu.NewMemoryRegistry(0, 0)
	red := newRegistry(b, srv, Options{KeyPrefix: "bench-side:", SnapshotInterval: DefaultSnapshotInterval})
	ctx := context.Background()
	for i := range services {
		for _, r := range []gunshu.Registry{mem, red} {
			if err := r.Register(ctx, serviceAddr(i), registrytest.HostPart(serviceAddr(i)), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	}
	managers := [2]string{benchManager(b, mem), benchManager(b, red)}
	var spent [2]atomic.Int64 // ns spent listing: memory, redis
	var turn atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Each goroutine alternates, starting on either side.
			first := int(turn.Add(1) % 2)
			for k := range 2 {
				side := (first + k) % 2
				start := time.Now()
				list, err := gunshu.FetchList(ctx, managers[side], 5*time.Second, gunshu.MessageLimits{})
				spent[side].Add(int64(time.Since(start)))
				if err != nil || len(list) != services {
					b.Errorf("list: %d services, %v", len(list), err)
					return
				}
			}
		}
	})
	// Rates as if each side had the goroutines to itself: lists over the
	// time spent on them, per goroutine.
	memNs, redisNs := float64(spent[0].Load()), float64(spent[1].Load())
	par := float64(4 * runtime.GOMAXPROCS(0))
	b.ReportMetric(float64(b.N)/(memNs/1e9/par), "lists/s-memory")
	b.ReportMetric(float64(b.N)/(redisNs/1e9/par), "lists/s-redis")
	b.ReportMetric(memNs/redisNs, "redis/memory-rate")
}

// BenchmarkRegisterSideBySide alternates registrations of new services
// (verification off) with a manager on a MemoryRegistry and one on Redis,
// and reports each side's rate and their ratio.
func BenchmarkRegisterSideBySide(b *testing.B) {
	srv := redistest.Start(b)
	red := newRegistry(b, srv, Options{KeyPrefix: "bench-reg-side:"})
	managers := [2]string{benchManager(b, gunshu.NewMemoryRegistry(0, 0)), benchManager(b, red)}
	var spent [2]atomic.Int64 // ns spent registering: memory, redis
	var next atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))
			for k := range 2 {
				side := (i + k) % 2
				start := time.Now()
				err := gunshu.Register(context.Background(), managers[side], serviceAddr(i), 5*time.Second)
				spent[side].Add(int64(time.Since(start)))
				if err != nil {
					b.Errorf("reg: %v", err)
					return
				}
			}
		}
	})
	memNs, redisNs := float64(spent[0].Load()), float64(spent[1].Load())
	par := float64(4 * runtime.GOMAXPROCS(0))
	b.ReportMetric(float64(b.N)/(memNs/1e9/par), "regs/s-memory")
	b.ReportMetric(float64(b.N)/(redisNs/1e9/par), "regs/s-redis")
	b.ReportMetric(memNs/redisNs, "redis/memory-rate")
}
