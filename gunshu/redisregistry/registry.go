// Package redisregistry keeps a Gunshu manager's registry in Redis
// (standalone, Sentinel or Cluster), so that several managers serve one
// consistent list of services.
//
// It is a package of its own so that programs using the gunshu core
// (relays, initiators) do not link a Redis client.
//
// Caps are checked and applied by Lua scripts, atomically across managers;
// consecutive test failures are counted in Redis. Patrol is sharded among
// the live managers (gunshu.PatrolClaimer), so each service is tested
// about once per interval in all. list is answered from a local snapshot
// refreshed every SnapshotInterval with one round trip, which carries the
// addresses only when they changed. While Redis is unreachable the
// snapshot keeps answering and writes fail; the client reconnects by
// itself.
package redisregistry

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults.
const (
	DefaultKeyPrefix        = "gunshu:"
	DefaultTimeout          = 2 * time.Second
	DefaultSnapshotInterval = 500 * time.Millisecond
	// DefaultExpireAfter drops a service not registered again for three of
	// the relays' default register intervals.
	DefaultExpireAfter = 3 * gunshu.DefaultRegisterInterval
)

// Options configure a Registry.
type Options struct {
	// Redis says how to reach Redis: one address is a standalone server,
	// several a Cluster, MasterName a Sentinel group. Its timeouts default
	// to Timeout.
	Redis redis.UniversalOptions
	// KeyPrefix starts every key; "" means DefaultKeyPrefix. Keys are
	// "{<prefix>}<name>": the braces make a Cluster keep them in one slot.
	KeyPrefix string
	// Timeout bounds every Redis operation; 0 means DefaultTimeout.
	Timeout time.Duration
	// SnapshotInterval is how often the local list is refreshed; 0 means
	// DefaultSnapshotInterval.
	SnapshotInterval time.Duration
	// ExpireAfter drops services not registered again for that long; 0
	// means DefaultExpireAfter, negative never expires. Keep it above the
	// relays' register interval.
	ExpireAfter time.Duration
	// MaxServices and MaxPerIP are the caps (0: none); SetLimits changes
	// them later.
	MaxServices, MaxPerIP int
	// MaxPerNetwork caps the services of one network (gunshu.NetworkOf);
	// 0: none. SetMaxPerNetwork changes it later.
	MaxPerNetwork int
	Logger        *zap.Logger
	// OnRefresh, when set, is called after every snapshot refresh with its
	// error (nil if Redis answered) and the age of the snapshot now served:
	// for metrics.
	OnRefresh func(err error, snapshotAge time.Duration)
}

// Registry is a gunshu.Registry kept in Redis.
type Registry struct {
	client    redis.UniversalClient
	keys      []string
	timeout   time.Duration
	interval  time.Duration
	expire    time.Duration
	log       *zap.Logger
	onRefresh func(error, time.Duration)

	maxServices, maxPerIP, maxPerNetwork atomic.Int64

	// id names this registry among the patrolling managers; patrolUntil
	// (unix ns) is when the refresher stops renewing its heartbeat.
	id          string
	patrolUntil atomic.Int64

	mu       sync.RWMutex
	addrs    []string  // the snapshot
	version  string    // Redis version of the snapshot; "" forces a full read
	loadedAt time.Time // last time Redis confirmed the snapshot; zero if never
	lastErr  error     // error of the last refresh
	down     bool
	// edits are this manager's own changes to the snapshot (a service
	// it registered or removed) since the oldest refresh under way, each
	// numbered: a refresh reapplies those made after its read began, so
	// its older reply never hides them.
	edits    []snapshotEdit
	editSeq  uint64
	readsRun int // refreshes under way

	stop chan struct{}
	done chan struct{}
}

// New connects to Redis and starts refreshing the snapshot; Close stops.
// An unreachable Redis is no error: the registry keeps trying, and list
// fails until a first snapshot arrives.
func New(o Options) *Registry {
	r := &Registry{
		timeout:   cmp.Or(o.Timeout, DefaultTimeout),
		interval:  cmp.Or(o.SnapshotInterval, DefaultSnapshotInterval),
		expire:    cmp.Or(o.ExpireAfter, DefaultExpireAfter),
		log:       o.Logger,
		onRefresh: o.OnRefresh,
		id:        newID(),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	prefix := o.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	for _, name := range keyNames {
		r.keys = append(r.keys, "{"+prefix+"}"+name)
	}
	r.SetLimits(o.MaxServices, o.MaxPerIP)
	r.SetMaxPerNetwork(o.MaxPerNetwork)

	ro := o.Redis
	ro.ContextTimeoutEnabled = true
	ro.DialTimeout = cmp.Or(ro.DialTimeout, r.timeout)
	ro.ReadTimeout = cmp.Or(ro.ReadTimeout, r.timeout)
	ro.WriteTimeout = cmp.Or(ro.WriteTimeout, r.timeout)
	// One retry covers a pooled connection broken by a Redis restart. A
	// script retried after its reply was lost applies twice, which only a
	// failure count notices: no more retries than that.
	ro.MaxRetries = 1
	r.client = redis.NewUniversalClient(&ro)

	r.refresh()
	go r.run()
	return r
}

// newID returns a random manager id: it says nothing of the host.
func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SetLimits sets the caps (0: none). Safe at any time; the caps apply to
// the next registrations, and to all managers only if all use the same.
func (r *Registry) SetLimits(maxServices, maxPerIP int) {
	r.maxServices.Store(int64(max(maxServices, 0)))
	r.maxPerIP.Store(int64(max(maxPerIP, 0)))
}

// SetMaxPerNetwork sets the per-network cap (0: none), as SetLimits does
// the others.
func (r *Registry) SetMaxPerNetwork(n int) { r.maxPerNetwork.Store(int64(max(n, 0))) }

// Close stops the refresher, hands this manager's patrol share over to
// the others at once, and closes the connections.
func (r *Registry) Close() error {
	select {
	case <-r.stop:
		return nil
	default:
	}
	close(r.stop)
	<-r.done
	if r.patrolUntil.Load() != 0 {
		ctx, cancel := r.op(context.Background())
		if err := leaveScript.Run(ctx, r.client, r.keys, r.id).Err(); err != nil {
			r.log.Warn("redis registry: leaving patrol; the others take over when the heartbeat lapses", zap.Error(err))
		}
		cancel()
	}
	return r.client.Close()
}

func (r *Registry) run() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.refresh()
		}
	}
}

// op bounds one Redis operation by Timeout within ctx.
func (r *Registry) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// expireBefore is the registration time in ms before which services
// expire; 0 when expiry is off.
func (r *Registry) expireBefore(now time.Time) int64 {
	if r.expire < 0 {
		return 0
	}
	return now.Add(-r.expire).UnixMilli()
}

// snapshotEdit is one of this manager's own changes to the snapshot.
type snapshotEdit struct {
	seq   uint64
	addr  string
	added bool // registered; false: removed
}

// refresh brings the snapshot up to date with one round trip.
func (r *Registry) refresh() {
	r.mu.Lock()
	known, readFrom := r.version, r.editSeq
	r.readsRun++
	r.mu.Unlock()
	id := ""
	if r.patrolling() {
		id = r.id
	}
	ctx, cancel := r.op(context.Background())
	res, err := snapshotScript.Run(ctx, r.client, r.keys, known, r.expireBefore(time.Now()),
		id, r.heartbeatTTL().Milliseconds()).StringSlice()
	cancel()
	if err == nil && len(res) == 0 {
		err = errors.New("empty snapshot reply")
	}
	if err != nil {
		err = r.failed(err)
	}
	now := time.Now()
	r.mu.Lock()
	wasDown, staleFor := r.down, now.Sub(r.loadedAt)
	r.lastErr, r.down = err, err != nil
	if err == nil {
		r.loadedAt = now
		if res[0] != known {
			r.version, r.addrs = res[0], res[1:]
			r.reapplyEdits(readFrom)
		}
	}
	if r.readsRun--; r.readsRun == 0 {
		r.edits = r.edits[:0]
	}
	age := now.Sub(r.loadedAt)
	loaded := !r.loadedAt.IsZero()
	r.mu.Unlock()

	switch {
	case err != nil && !wasDown:
		r.log.Warn(downMessage(err, loaded), zap.Error(err))
	case err == nil && wasDown:
		r.log.Info("redis registry reachable again", zap.Duration("snapshot_was_stale_for", staleFor))
	}
	if r.onRefresh != nil {
		r.onRefresh(err, age)
	}
}

// Addrs implements gunshu.Registry from the local snapshot: it costs no
// round trip, and keeps answering while Redis is down.
func (r *Registry) Addrs(context.Context) ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.loadedAt.IsZero() {
		return nil, fmt.Errorf("no snapshot of the redis registry yet: %w", r.lastErr)
	}
	return slices.Clone(r.addrs), nil
}

// SnapshotAge says how long ago Redis last confirmed the snapshot, and
// the error of the latest refresh.
func (r *Registry) SnapshotAge() (time.Duration, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.loadedAt.IsZero() {
		return 0, r.lastErr
	}
	return time.Since(r.loadedAt), r.lastErr
}

// Register implements gunshu.Registry.
func (r *Registry) Register(ctx context.Context, addr, group string, now time.Time) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	network, _ := gunshu.NetworkOf(group)
	res, err := registerScript.Run(ctx, r.client, r.keys, addr, group, now.UnixMilli(),
		r.maxServices.Load(), r.maxPerIP.Load(), r.expireBefore(now), network, r.maxPerNetwork.Load()).Int()
	if err != nil {
		return r.failed(err)
	}
	switch res {
	case -1:
		return gunshu.ErrRegistryFull
	case -2:
		// A refresh into a full group dropped the service: this manager
		// stops listing it at once, as after Remove.
		r.forget(addr)
		return gunshu.ErrGroupFull
	case -3:
		return gunshu.ErrNetworkFull
	case 1:
		// This manager lists a new service at once; the others within a
		// snapshot interval.
		r.edit(addr, true)
	}
	return nil
}

// Remove implements gunshu.Registry.
func (r *Registry) Remove(ctx context.Context, addr string) (bool, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	res, err := removeScript.Run(ctx, r.client, r.keys, addr).Int()
	if err != nil {
		return false, r.failed(err)
	}
	r.forget(addr)
	return res == 1, nil
}

// forget drops addr from the local snapshot.
func (r *Registry) forget(addr string) { r.edit(addr, false) }

// edit adds (or drops) addr in the local snapshot, and keeps the change
// for the refreshes under way.
func (r *Registry) edit(addr string, added bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyEdit(addr, added)
	if r.readsRun > 0 {
		r.editSeq++
		r.edits = append(r.edits, snapshotEdit{seq: r.editSeq, addr: addr, added: added})
	}
}

// reapplyEdits redoes on a snapshot just read the edits made after its
// read began (numbered above from): Redis had them, the reply may not.
func (r *Registry) reapplyEdits(from uint64) {
	for _, e := range r.edits {
		if e.seq > from {
			r.applyEdit(e.addr, e.added)
		}
	}
}

func (r *Registry) applyEdit(addr string, added bool) {
	if !added {
		r.addrs = slices.DeleteFunc(r.addrs, func(a string) bool { return a == addr })
	} else if !slices.Contains(r.addrs, addr) {
		r.addrs = append(r.addrs, addr)
	}
}

// RecordTest implements gunshu.Registry; the failures are counted in
// Redis, shared by all managers.
func (r *Registry) RecordTest(ctx context.Context, addr string, ok bool, latency time.Duration, now time.Time) (int, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	okArg := "0"
	if ok {
		okArg = "1"
	}
	res, err := recordTestScript.Run(ctx, r.client, r.keys, addr, okArg, now.UnixMilli(), int64(latency)).Int()
	if err != nil {
		return 0, r.failed(err)
	}
	return max(res, 0), nil
}

// ClaimPatrol implements gunshu.PatrolClaimer by sharding: the managers
// that patrol keep a heartbeat in Redis, and each service belongs to the
// live manager ranked first for it by rendezvous hashing. Every manager
// computes the same owners from the same live set, so each service is
// tested once per interval, on its owner's schedule; when a manager stops
// (or its heartbeat lapses) its services spread over the others.
func (r *Registry) ClaimPatrol(ctx context.Context, addrs []string, interval time.Duration) ([]string, error) {
	// From now on the refresher keeps the heartbeat, until patrol stops
	// calling for two intervals.
	r.patrolUntil.Store(time.Now().Add(2 * interval).UnixNano())
	ctx, cancel := r.op(ctx)
	defer cancel()
	live, err := patrolScript.Run(ctx, r.client, r.keys, r.id, r.heartbeatTTL().Milliseconds()).StringSlice()
	if err != nil {
		return nil, r.failed(err)
	}
	mine := addrs[:0:0]
	for _, a := range addrs {
		if owner(a, live) == r.id {
			mine = append(mine, a)
		}
	}
	return mine, nil
}

// heartbeatTTL is how long a manager counts as patrolling after its last
// heartbeat: three refreshes, and at least a second, so that a late
// refresh on a busy machine does not reshuffle the shares.
func (r *Registry) heartbeatTTL() time.Duration { return max(3*r.interval, time.Second) }

// patrolling reports whether the refresher should renew the heartbeat.
func (r *Registry) patrolling() bool { return time.Now().UnixNano() < r.patrolUntil.Load() }

// owner returns the manager among ids that patrols addr: the one with the
// highest hash of (id, addr).
func owner(addr string, ids []string) string {
	var best string
	var bestScore uint64
	for _, id := range ids {
		if s := rendezvous(id, addr); best == "" || s > bestScore {
			best, bestScore = id, s
		}
	}
	return best
}

// rendezvous hashes id and addr with FNV-1a and a splitmix64 finish: the
// same on every manager, unlike maphash.
func rendezvous(id, addr string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * prime
	}
	h = (h ^ 0xff) * prime
	for i := 0; i < len(addr); i++ {
		h = (h ^ uint64(addr[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// Services implements gunshu.Registry with one transaction; the result is
// sorted by address.
func (r *Registry) Services(ctx context.Context) ([]gunshu.ServiceRecord, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	var (
		seen                   *redis.ZSliceCmd
		first, failures, tests *redis.MapStringStringCmd
	)
	cmds, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		seen = p.ZRangeWithScores(ctx, r.keys[0], 0, -1)
		first = p.HGetAll(ctx, r.keys[1])
		failures = p.HGetAll(ctx, r.keys[4])
		tests = p.HGetAll(ctx, r.keys[5])
		return nil
	})
	if err != nil {
		return nil, r.failed(queuedError(cmds, err))
	}
	out := make([]gunshu.ServiceRecord, 0, len(seen.Val()))
	for _, z := range seen.Val() {
		addr, _ := z.Member.(string)
		s := gunshu.ServiceRecord{Addr: addr, LastSeen: time.UnixMilli(int64(z.Score))}
		s.FirstSeen = parseMillis(first.Val()[addr])
		s.Failures, _ = strconv.Atoi(failures.Val()[addr])
		if t := strings.Fields(tests.Val()[addr]); len(t) == 3 {
			s.LastTest = parseMillis(t[0])
			s.LastTestOK = t[1] == "1"
			ns, _ := strconv.ParseInt(t[2], 10, 64)
			s.LastLatency = time.Duration(ns)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b gunshu.ServiceRecord) int { return strings.Compare(a.Addr, b.Addr) })
	return out, nil
}

func parseMillis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

var (
	_ gunshu.Registry      = (*Registry)(nil)
	_ gunshu.PatrolClaimer = (*Registry)(nil)
)
