package redisregistry

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/registrytest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// testManager is one in-process manager with its own listener and its own
// connection to the shared Redis: what a separate Caddy instance would be.
type testManager struct {
	*gunshu.Manager
	reg    *Registry
	addr   string
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// startManagers starts n managers on srv, configured by configure (nil
// for the test defaults); they patrol if PatrolInterval is set.
func startManagers(t testing.TB, srv *redistest.Server, n int, o Options, configure func(*gunshu.Manager)) []*testManager {
	t.Helper()
	var out []*testManager
	for range n {
		reg := newRegistry(t, srv, o)
		m := &gunshu.Manager{Registry: reg, Policy: testnet.LoopbackPolicy(), TestTimeout: time.Second}
		if configure != nil {
			configure(m)
		}
		ln := testkit.Listen(t)
		ctx, cancel := context.WithCancel(context.Background())
		tm := &testManager{Manager: m, reg: reg, addr: ln.Addr().String(), ln: ln, cancel: cancel}
		tm.wg.Add(1)
		go func() {
			defer tm.wg.Done()
			_ = m.Serve(ln)
		}()
		if m.PatrolInterval > 0 {
			tm.wg.Add(1)
			go func() {
				defer tm.wg.Done()
				m.Patrol(ctx)
			}()
		}
		t.Cleanup(tm.stop)
		out = append(out, tm)
	}
	return out
}

// stop stops serving and patrolling and closes the Redis connections, as
// a manager that dies would.
func (tm *testManager) stop() {
	tm.once.Do(func() {
		tm.ln.Close()
		tm.cancel()
		tm.wg.Wait()
		_ = tm.reg.Close()
	})
}

func (tm *testManager) list(t testing.TB) []string {
	t.Helper()
	list, err := gunshu.FetchList(context.Background(), tm.addr, 2*time.Second, gunshu.MessageLimits{})
	if err != nil {
		t.Fatalf("list at %s: %v", tm.addr, err)
	}
	slices.Sort(list)
	return list
}

type testRelay struct {
	addr string
	ln   *testkit.CountingListener
	// tests counts the test exchanges the relay answered (a manager's
	// patrol also sends an est probe on a connection of its own).
	tests testCounter
}

// testCounter is a gunshu.Observer counting test sessions.
type testCounter struct{ atomic.Int64 }

func (c *testCounter) SessionStarted(gunshu.Role) {}
func (c *testCounter) SessionEnded(s gunshu.Session) {
	if s.Command == gunshu.CmdTest {
		c.Add(1)
	}
}

// startRelays starts n relays on loopback, stopped when the test ends.
func startRelays(t testing.TB, n int) []*testRelay {
	t.Helper()
	var out []*testRelay
	for range n {
		ln := &testkit.CountingListener{Listener: testkit.Listen(t)}
		r := &testRelay{ln: ln}
		r.addr = testnet.ServeRelayOn(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Observer: &r.tests}, ln)
		out = append(out, r)
	}
	return out
}

func register(t testing.TB, manager, addr string) {
	t.Helper()
	if err := gunshu.Register(context.Background(), manager, addr, 5*time.Second); err != nil {
		t.Fatalf("registering %s at %s: %v", addr, manager, err)
	}
}

func addrsOf(relays []*testRelay) []string {
	var out []string
	for _, r := range relays {
		out = append(out, r.addr)
	}
	slices.Sort(out)
	return out
}

func TestRegisteredAtOneListedByAll(t *testing.T) {
	srv := redistest.Start(t)
	// The default snapshot interval: the others list within a second.
	ms := startManagers(t, srv, 3, Options{SnapshotInterval: DefaultSnapshotInterval}, nil)
	relays := startRelays(t, 1)
	register(t, ms[0].addr, relays[0].addr)
	if got := ms[0].list(t); !slices.Equal(got, []string{relays[0].addr}) {
		t.Fatalf("A lists %v right after the registration", got)
	}
	testkit.Eventually(t, time.Second, "B and C list the relay registered at A", func() bool {
		return slices.Equal(ms[1].list(t), []string{relays[0].addr}) &&
			slices.Equal(ms[2].list(t), []string{relays[0].addr})
	})
}

func TestConcurrentRegistrationsKeepCaps(t *testing.T) {
	srv := redistest.Start(t)
	const (
		hosts, perHost   = 15, 10 // 150 addresses
		maxServices      = 100
		maxPerIP         = 8
		registrationsPer = 2 // each address at two managers: 300 in all
	)
	ms := startManagers(t, srv, 3, Options{MaxServices: maxServices, MaxPerIP: maxPerIP},
		func(m *gunshu.Manager) { m.DisableVerify = true })
	var (
		mu    sync.Mutex
		acked = map[string]int{}
		why   = map[string]int{} // errors of the regs that did not get ok
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for h := range hosts {
		for p := range perHost {
			addr := fmt.Sprintf("127.0.1.%d:%d", h+1, 2000+p)
			for k := range registrationsPer {
				manager := ms[(h*perHost+p+k)%len(ms)].addr
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					err := gunshu.Register(context.Background(), manager, addr, 5*time.Second)
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						acked[addr]++
					} else {
						why[err.Error()]++
					}
				}()
			}
		}
	}
	close(start)
	wg.Wait()

	svcs, err := ms[0].reg.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 15 hosts of at most 8 could hold 120: the registry cap is reached
	// whatever the order, and not passed.
	if len(svcs) != maxServices {
		t.Fatalf("%d services registered, want exactly max_services %d; regs not ok: %v", len(svcs), maxServices, why)
	}
	perHostCount := map[string]int{}
	for _, s := range svcs {
		perHostCount[registrytest.HostPart(s.Addr)]++
		if acked[s.Addr] == 0 {
			t.Errorf("%s is registered but no reg for it got ok", s.Addr)
		}
	}
	for h, n := range perHostCount {
		if n > maxPerIP {
			t.Errorf("host %s has %d services, cap %d", h, n, maxPerIP)
		}
	}
	if len(acked) != maxServices {
		t.Errorf("%d addresses got ok, want %d; regs not ok: %v", len(acked), maxServices, why)
	}
	testkit.Eventually(t, time.Second, "every manager lists the 100 services once", func() bool {
		for _, m := range ms {
			list := m.list(t)
			if len(list) != maxServices || len(slices.Compact(list)) != maxServices {
				return false
			}
		}
		return true
	})
}

func TestPatrolSharedAmongManagers(t *testing.T) {
	srv := redistest.Start(t)
	const (
		interval = time.Second
		rounds   = 4 // rounds per counting window
	)
	ms := startManagers(t, srv, 3, Options{}, func(m *gunshu.Manager) {
		m.PatrolInterval = interval
		// A test slowed by a busy machine must not remove a live relay.
		m.TestTimeout, m.MaxFailures = 5*time.Second, 3
	})
	started := time.Now() // the managers' patrol rounds fall near started + k×interval
	relays := startRelays(t, 10)
	for i, r := range relays {
		register(t, ms[i%3].addr, r.addr)
	}
	testkit.Eventually(t, time.Second, "every manager lists the 10 relays", func() bool {
		for _, m := range ms {
			if !slices.Equal(m.list(t), addrsOf(relays)) {
				return false
			}
		}
		return true
	})
	// In the first round a manager may test services whose owner has not
	// yet joined patrol: count from the steady state on.
	time.Sleep(2 * interval)
	// count returns the tests each relay received over a window of rounds.
	// A window starts halfway between rounds, so that late rounds on a
	// loaded machine do not fall on its edges.
	count := func() []int64 {
		time.Sleep((interval + interval/2 - time.Since(started)%interval) % interval)
		before := make([]int64, len(relays))
		for i, r := range relays {
			before[i] = r.tests.Load()
		}
		time.Sleep(rounds * interval)
		out := make([]int64, len(relays))
		for i, r := range relays {
			out[i] = r.tests.Load() - before[i]
		}
		return out
	}
	check := func(when string, counts []int64) {
		t.Helper()
		var total int64
		for i, n := range counts {
			total += n
			// One test per interval is 4; three managers each testing
			// would be 12.
			if n < rounds-2 || n > rounds+2 {
				t.Errorf("%s: relay %d tested %d times in %d intervals, want about %d", when, i, n, rounds, rounds)
			}
		}
		t.Logf("%s: tests per relay over %d intervals: %v (total %d)", when, rounds, counts, total)
	}
	check("3 managers", count())
	// A dies: its connections drop without leaving patrol. Its heartbeat
	// lapses within the interval.
	_ = ms[0].reg.client.Close()
	ms[0].stop()
	time.Sleep(ms[0].reg.heartbeatTTL())
	check("2 managers, one died", count())
	ms[1].stop() // a clean stop hands over at once
	check("1 manager", count())
	if got := ms[2].list(t); !slices.Equal(got, addrsOf(relays)) {
		t.Fatalf("patrol removed live relays: %v", got)
	}
}

func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	const registerInterval = time.Second
	ms := startManagers(t, srv, 2, Options{Timeout: 500 * time.Millisecond}, nil)
	relays := startRelays(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i, r := range relays {
		reg := &gunshu.Registrar{Managers: []string{ms[i%2].addr}, Advertise: r.addr,
			Interval: registerInterval, Timeout: 2 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			reg.Run(ctx)
		}()
	}
	want := addrsOf(relays)
	testkit.Eventually(t, 3*time.Second, "both managers list the 5 relays", func() bool {
		return slices.Equal(ms[0].list(t), want) && slices.Equal(ms[1].list(t), want)
	})

	srv.Stop()
	late := startRelays(t, 1)[0]
	start := time.Now()
	err := gunshu.Register(context.Background(), ms[1].addr, late.addr, 5*time.Second)
	if err == nil {
		t.Fatal("reg answered ok with Redis down")
	}
	// The registry's 500ms timeout bounds the wait, not the client's 5s.
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("reg failed after %v: %v", took, err)
	}
	t.Logf("reg with Redis down: %v after %v", err, time.Since(start))
	testkit.Eventually(t, time.Second, "the managers notice Redis is down", func() bool {
		_, e0 := ms[0].reg.SnapshotAge()
		_, e1 := ms[1].reg.SnapshotAge()
		return e0 != nil && e1 != nil
	})
	for _, m := range ms {
		if got := m.list(t); !slices.Equal(got, want) {
			t.Fatalf("stale list at %s = %v, want %v", m.addr, got, want)
		}
	}

	srv.Restart() // empty: no persistence
	restarted := time.Now()
	// Each relay tries again within its register interval (its retry
	// backoff is capped there), plus 10% jitter; then a snapshot refresh.
	// The stale snapshots list them all along: check that Redis holds them
	// again and that both snapshots come from it.
	testkit.Eventually(t, registerInterval+registerInterval/10+200*time.Millisecond, "every live relay listed again", func() bool {
		svcs, err := ms[0].reg.Services(context.Background())
		if err != nil || len(svcs) != len(want) {
			return false
		}
		for _, m := range ms {
			if age, err := m.reg.SnapshotAge(); err != nil || age > 200*time.Millisecond || !slices.Equal(m.list(t), want) {
				return false
			}
		}
		return true
	})
	t.Logf("registry filled again %v after Redis restarted", time.Since(restarted))
}

func TestEntranceThroughManagersOnOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	ms := startManagers(t, srv, 3, Options{}, nil)
	relays := startRelays(t, 2)
	register(t, ms[0].addr, relays[0].addr) // at A
	register(t, ms[2].addr, relays[1].addr) // at C
	testkit.Eventually(t, time.Second, "B lists the relays of A and C", func() bool {
		return slices.Equal(ms[1].list(t), addrsOf(relays))
	})
	responder := testnet.EchoResponder(t)
	entrance := &gunshu.Entrance{
		Dialer:    &gunshu.Dialer{Manager: ms[1].addr, MaxRelays: -1},
		Responder: responder,
	}
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) { _ = entrance.ServeConn(c) })

	before := []int64{relays[0].ln.Accepted.Load(), relays[1].ln.Accepted.Load()}
	for i := range 10 {
		msg := fmt.Sprintf("hello %d through B", i)
		if got := roundTrip(t, ln.Addr().String(), msg); got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	for i, r := range relays {
		if r.ln.Accepted.Load() == before[i] {
			t.Errorf("relay %d (registered at %s) carried no route", i, []string{"A", "C"}[i])
		}
	}
}

// roundTrip sends msg to addr, half-closes and returns what came back.
func roundTrip(t testing.TB, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	buf := make([]byte, 0, len(msg))
	tmp := make([]byte, 512)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			break
		}
	}
	return string(buf)
}
