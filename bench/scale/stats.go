package main

import (
	"context"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// watcher follows dead and joining relays in Redis: the managers' lists
// are snapshots of it, refreshed every snapshot_interval (500 ms), and a
// manager that removes a relay drops it from its own list at once.
type watcher struct {
	rdb            *redis.Client
	mu             sync.Mutex
	dying, joining map[string]time.Time
	removals       map[time.Time]time.Duration // by time of death
	listings       []time.Duration
	deaths, joins  int
}

func newWatcher(rdb *redis.Client) *watcher {
	return &watcher{rdb: rdb, dying: map[string]time.Time{}, joining: map[string]time.Time{}, removals: map[time.Time]time.Duration{}}
}

func (w *watcher) died(addr string, at time.Time) {
	w.mu.Lock()
	w.dying[addr] = at
	w.deaths++
	w.mu.Unlock()
}

func (w *watcher) joined(addr string, at time.Time) {
	w.mu.Lock()
	w.joining[addr] = at
	w.joins++
	w.mu.Unlock()
}

// run polls every 250 ms until ctx ends.
func (w *watcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		w.poll(ctx)
	}
}

func (w *watcher) poll(ctx context.Context) {
	w.mu.Lock()
	var addrs []string
	for a := range w.dying {
		addrs = append(addrs, a)
	}
	for a := range w.joining {
		addrs = append(addrs, a)
	}
	w.mu.Unlock()
	if len(addrs) == 0 {
		return
	}
	cmds := make([]*redis.FloatCmd, len(addrs))
	_, _ = w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range addrs {
			cmds[i] = p.ZScore(ctx, "{gunshu:}seen", a)
		}
		return nil
	})
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, a := range addrs {
		present := cmds[i].Err() == nil
		if at, ok := w.dying[a]; ok && !present && cmds[i].Err() == redis.Nil {
			w.removals[at] = now.Sub(at)
			delete(w.dying, a)
		}
		if at, ok := w.joining[a]; ok && present {
			w.listings = append(w.listings, now.Sub(at))
			delete(w.joining, a)
		}
	}
}

// fill reports the removals of the relays that died at least two patrol
// intervals before end (the others may be listed still, as they should),
// and every join.
func (w *watcher) fill(r *Result, end time.Time, interval time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var removals []time.Duration
	for at, took := range w.removals {
		if at.Before(end.Add(-2 * interval)) {
			removals = append(removals, took)
			r.Deaths++
			if took <= 2*interval {
				r.Removed++
			}
		}
	}
	for _, at := range w.dying {
		if at.Before(end.Add(-2 * interval)) {
			r.Deaths++
		}
	}
	r.RemovalP50, r.RemovalMax = quantile(removals, 0.5), quantile(removals, 1)
	r.Joins, r.Listed = w.joins, len(w.listings)
	r.ListedP50, r.ListedMax = quantile(w.listings, 0.5), quantile(w.listings, 1)
}

// listStats are the list exchanges of the entrances.
type listStats struct {
	mu        sync.Mutex
	latencies []time.Duration
	bytes     int64
	failed    int
}

// run asks the managers for the list every every, in turn, until ctx ends.
func (l *listStats) run(ctx context.Context, managers []string, first int, every time.Duration) {
	for i := first; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		start := time.Now()
		n, err := fetchList(managers[i%len(managers)])
		took := time.Since(start)
		l.mu.Lock()
		if err != nil {
			l.failed++
		} else {
			l.latencies = append(l.latencies, took)
			l.bytes += int64(n)
		}
		l.mu.Unlock()
	}
}

// fetchList runs one list exchange and returns the bytes of the answer.
func fetchList(manager string) (int, error) {
	conn, err := net.DialTimeout("tcp", manager, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("list\n")); err != nil {
		return 0, err
	}
	b, err := io.ReadAll(io.LimitReader(conn, 4<<20))
	if err != nil || len(b) < 2 {
		return 0, err
	}
	return len(b), nil
}

func (l *listStats) fill(r *Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.ListP50, r.ListP99 = quantile(l.latencies, 0.5), quantile(l.latencies, 0.99)
	if len(l.latencies) > 0 {
		r.ListBytes = float64(l.bytes) / float64(len(l.latencies))
	}
}

// listCPU is the CPU one thread spends fetching and reading a list, the
// mean over n fetches: what an entrance pays once per ListTTL.
func listCPU(manager string, n int) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after syscall.Rusage
	const rusageThread = 1
	_ = syscall.Getrusage(rusageThread, &before)
	for range n {
		_, _ = fetchList(manager)
	}
	_ = syscall.Getrusage(rusageThread, &after)
	used := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	return used / time.Duration(n)
}

// fillPatrol computes the patrol figures from the tests relays saw in
// [from, to): tests per listed relay per interval, the gaps between two
// tests of one relay, and how much of each interval patrol is busy. The
// managers' rounds start at a fixed phase of the interval (a ticker), so
// the busy part is the 100 ms phase slots that saw tests in at least half
// of the intervals: at least the longest round, at most the sum of the
// managers' rounds, and a whole interval when rounds overrun.
func fillPatrol(r *Result, ev events, from, to time.Time, interval time.Duration) {
	const slot = 100 * time.Millisecond
	slots := int(interval / slot)
	intervals := max(1, int(to.Sub(from)/interval))
	seen := make([]map[int]bool, slots) // slot -> intervals with tests in it
	for i := range seen {
		seen[i] = map[int]bool{}
	}
	var tests int
	var gaps []time.Duration
	for _, ts := range ev.tests {
		slices.Sort(ts)
		for i, t := range ts {
			if t < from.UnixNano() || t >= to.UnixNano() {
				continue
			}
			tests++
			since := time.Duration(t - from.UnixNano())
			seen[int(since%interval/slot)][int(since/interval)] = true
			if i > 0 && ts[i-1] >= from.UnixNano() {
				gaps = append(gaps, time.Duration(t-ts[i-1]))
			}
		}
	}
	r.TestGapP50, r.TestGapP99 = quantile(gaps, 0.5), quantile(gaps, 0.99)
	if r.Relays > 0 {
		r.TestsPerRelayRound = float64(tests) / float64(r.Relays) / (to.Sub(from).Seconds() / interval.Seconds())
	}
	for _, s := range seen {
		if 2*len(s) >= intervals {
			r.PatrolBusy += slot
		}
	}
}

func fillRegs(r *Result, regs []regEvent, from, to time.Time) {
	var lat []time.Duration
	for _, e := range regs {
		if e.at < from.UnixNano() || e.at >= to.UnixNano() {
			continue
		}
		if !e.ok {
			r.RegFailed++
			continue
		}
		lat = append(lat, time.Duration(e.latency))
	}
	r.RegPerSec = float64(len(lat)) / to.Sub(from).Seconds()
	r.RegP50, r.RegP99 = quantile(lat, 0.5), quantile(lat, 0.99)
}
