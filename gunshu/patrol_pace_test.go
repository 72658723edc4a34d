package gunshu_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// pacedManager is a manager listing n live relays, reporting each patrol
// test on tested.
func pacedManager(t *testing.T, n int) (*gunshu.Manager, chan string) {
	t.Helper()
	tested := make(chan string, n)
	m := &gunshu.Manager{
		Policy:      testnet.LoopbackPolicy(),
		TestTimeout: 2 * time.Second,
		OnTest:      func(addr string, ok bool, _ time.Duration) { tested <- addr },
	}
	for range n {
		relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
		if err := m.Register(context.Background(), relay); err != nil {
			t.Fatal(err)
		}
	}
	return m, tested
}

// TestPatrolRoundSpread: a paced round tests every service once, and
// starts the last of n tests no sooner than (n-1)/n of the spread.
func TestPatrolRoundSpread(t *testing.T) {
	const n, spread = 4, 400 * time.Millisecond
	m, tested := pacedManager(t, n)
	start := time.Now()
	m.PatrolRound(context.Background(), spread)
	if took := time.Since(start); took < spread*(n-1)/n {
		t.Fatalf("round took %v, want at least %v", took, spread*(n-1)/n)
	}
	seen := map[string]bool{}
	for range n {
		seen[<-tested] = true
	}
	if len(seen) != n || len(tested) != 0 {
		t.Fatalf("%d services tested, %d tests left over; want each of %d once", len(seen), len(tested), n)
	}
}

// TestPatrolRoundSpreadStopsWithContext: a round paced over an hour ends
// as soon as its context does, after the tests it started.
func TestPatrolRoundSpreadStopsWithContext(t *testing.T) {
	m, tested := pacedManager(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.PatrolRound(ctx, time.Hour) })
	select {
	case <-tested: // the first test starts at once
	case <-time.After(5 * time.Second):
		t.Fatal("no test at the start of the round")
	}
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the round did not end with its context")
	}
}
