package gunshu

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// listManager serves a manager whose registry the test fills directly.
func listManager(t *testing.T) (*MemoryRegistry, net.Listener, chan struct{}) {
	t.Helper()
	reg := NewMemoryRegistry(0, 0)
	ln := testkit.Listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&Manager{Registry: reg}).Serve(ln)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return reg, ln, done
}

func fakeRelays(t *testing.T, reg *MemoryRegistry, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := reg.Register(context.Background(), fmt.Sprintf("127.0.0.1:%d", 2000+i), fmt.Sprint(i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

// sortedRelays asks d for its relays, sorted. With refresh (a route
// failed) it waits for the fetch that starts in the background, then asks
// again: what the next route gets.
func sortedRelays(t *testing.T, d *Dialer, refresh bool) ([]string, error) {
	t.Helper()
	list, err := d.relays(context.Background(), refresh)
	if refresh && err == nil {
		testkit.Eventually(t, 5*time.Second, "the background fetch ends", func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return !d.lists.refreshing
		})
		list, err = d.relays(context.Background(), false)
	}
	list = slices.Clone(list)
	slices.Sort(list)
	return list, err
}

// TestListCacheKeepsLastGoodList: a manager that lists fewer than half
// the relays, or does not answer, does not take the last good list away
// from the routes until ListStaleLimit; the log says when that starts and
// when the manager lists the relays again.
func TestListCacheKeepsLastGoodList(t *testing.T) {
	reg, ln, served := listManager(t)
	fakeRelays(t, reg, 0, 8)
	clock := &testClock{t: time.Unix(1e9, 0)}
	core, logs := observer.New(zap.InfoLevel)
	d := &Dialer{Manager: ln.Addr().String(), ListTTL: time.Second, ListStaleLimit: time.Minute, Logger: zap.New(core)}
	d.init()
	d.clock = clock.now
	good, err := sortedRelays(t, d, false)
	if err != nil || len(good) != 8 {
		t.Fatalf("first list: %v, %v", good, err)
	}

	// Half the list is still a good list: it replaces the old one.
	for i := 0; i < 4; i++ {
		_, _ = reg.Remove(context.Background(), good[i])
	}
	clock.advance(2 * time.Second)
	if got, _ := sortedRelays(t, d, true); !slices.Equal(got, good[4:]) {
		t.Fatalf("a list of half the relays: routes use %v, want %v", got, good[4:])
	}

	// Fewer than half (none of the 4, and one new): the routes keep the
	// last good list and add the new relay.
	for _, a := range good[4:] {
		_, _ = reg.Remove(context.Background(), a)
	}
	fakeRelays(t, reg, 100, 1)
	clock.advance(2 * time.Second)
	want := append(slices.Clone(good[4:]), "127.0.0.1:2100")
	slices.Sort(want)
	if got, _ := sortedRelays(t, d, true); !slices.Equal(got, want) {
		t.Fatalf("a short list: routes use %v, want %v", got, want)
	}
	if n := logs.FilterMessageSnippet("fewer than half").Len(); n != 1 {
		t.Fatalf("%d warnings of the short list, want 1", n)
	}

	// The manager gone: still the same list, with no second warning.
	ln.Close()
	<-served
	clock.advance(2 * time.Second)
	if got, err := sortedRelays(t, d, true); err != nil || !slices.Equal(got, want) {
		t.Fatalf("manager down: routes use %v, %v; want %v", got, err, want)
	}
	if n := logs.FilterMessageSnippet("routes use the last good list").Len(); n != 0 {
		t.Fatalf("%d more warnings while degraded, want none: %v", n, logs.All())
	}

	// Past ListStaleLimit the list is no longer used.
	clock.advance(time.Minute)
	if got, err := d.relays(context.Background(), true); err == nil {
		t.Fatalf("a list older than ListStaleLimit was still used: %v", got)
	}
}

// TestListCacheAfterStaleLimit: once the last good list is older than
// ListStaleLimit, a short list is believed; the log says the manager
// lists relays again.
func TestListCacheAfterStaleLimit(t *testing.T) {
	reg, ln, _ := listManager(t)
	fakeRelays(t, reg, 0, 6)
	clock := &testClock{t: time.Unix(1e9, 0)}
	core, logs := observer.New(zap.InfoLevel)
	d := &Dialer{Manager: ln.Addr().String(), ListTTL: time.Second, ListStaleLimit: 10 * time.Second, Logger: zap.New(core)}
	d.init()
	d.clock = clock.now
	if got, _ := sortedRelays(t, d, false); len(got) != 6 {
		t.Fatalf("first list: %v", got)
	}
	addrs, _ := reg.Addrs(context.Background())
	for _, a := range addrs[1:] {
		_, _ = reg.Remove(context.Background(), a)
	}
	clock.advance(2 * time.Second)
	if got, _ := sortedRelays(t, d, true); len(got) != 6 {
		t.Fatalf("short list within the limit: %v, want the 6 of the last good list", got)
	}
	clock.advance(10 * time.Second)
	if got, _ := sortedRelays(t, d, true); len(got) != 1 {
		t.Fatalf("short list past the limit: %v, want the one listed", got)
	}
	if n := logs.FilterMessage("manager lists the relays again").Len(); n != 1 {
		t.Fatalf("%d lines saying the manager lists again, want 1: %v", n, logs.All())
	}
}

// TestListRefreshedInBackground: past ListTTL a route gets the cached
// list at once, even from a manager that never answers, while a fetch
// runs behind it.
func TestListRefreshedInBackground(t *testing.T) {
	reg, ln, _ := listManager(t)
	fakeRelays(t, reg, 0, 3)
	clock := &testClock{t: time.Unix(1e9, 0)}
	d := &Dialer{Manager: ln.Addr().String(), ListTTL: time.Second, Timeouts: Timeouts{Command: 300 * time.Millisecond}}
	d.init()
	d.clock = clock.now
	if got, _ := sortedRelays(t, d, false); len(got) != 3 {
		t.Fatalf("first list: %v", got)
	}

	// The manager now hangs: it accepts and never answers.
	silent := testkit.Listen(t)
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := silent.Accept(); err == nil {
			held <- c
		}
	}()
	defer func() {
		silent.Close()
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	d.Manager = silent.Addr().String()
	clock.advance(2 * time.Second)
	start := time.Now()
	if got, err := sortedRelays(t, d, false); err != nil || len(got) != 3 {
		t.Fatalf("past ListTTL: %v, %v; want the cached list", got, err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("a route waited %v on a silent manager", d)
	}
	testkit.Eventually(t, 5*time.Second, "the background fetch gives up", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return !d.lists.refreshing
	})
}

// TestEmptyListNotCached: a route asked for before any relay registered
// does not make the next routes see an empty network for ListTTL.
func TestEmptyListNotCached(t *testing.T) {
	reg, ln, _ := listManager(t)
	d := &Dialer{Manager: ln.Addr().String(), ListTTL: time.Hour}
	d.init()
	if got, err := d.relays(context.Background(), false); err != nil || len(got) != 0 {
		t.Fatalf("first list: %v, %v; want an empty one", got, err)
	}
	fakeRelays(t, reg, 0, 2)
	if got, _ := d.relays(context.Background(), false); len(got) != 2 {
		t.Fatalf("after two relays registered the routes use %v, want both", got)
	}
}
