package gunshu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Guard defaults.
const (
	DefaultGuards        = 1
	DefaultGuardLifetime = 30 * 24 * time.Hour
	// DefaultGuardFailures is how many dials in a row a guard may fail
	// before it is replaced.
	DefaultGuardFailures = 5
	guardSaveTimeout     = 5 * time.Second
)

// GuardStore keeps a guard set across restarts; the Caddy module backs it
// with Caddy's storage. Load returns nil data, or an error wrapping
// fs.ErrNotExist, when nothing was saved yet.
type GuardStore interface {
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, data []byte) error
}

// Guards keeps the few relays an initiator uses as first hops, as Tor
// does. Fresh random first hops let colluding relays count predecessors
// over many routes until the initiator stands out; a fixed first hop is
// either corrupt from the start (with the share of corrupt relays as
// probability) or shields the initiator for good.
//
// A guard is replaced only when it is gone from the manager's list, its
// lifetime is over, or MaxFailures dials to it failed in a row. Failures
// further down a route do not count: any relay on it can cause them, and
// they must not let a hostile relay force the initiator onto new guards.
//
// One Guards may serve several Dialers that share a source address; it is
// safe for concurrent use.
type Guards struct {
	// Count is how many guards are kept; 0 means DefaultGuards. (An
	// initiator without guards has a nil *Guards.)
	Count int
	// Lifetime is how long a guard is kept at most; 0 means
	// DefaultGuardLifetime.
	Lifetime time.Duration
	// MaxFailures is how many consecutive failed dials replace a guard; 0
	// means DefaultGuardFailures.
	MaxFailures int
	// Store keeps the set across restarts; nil keeps it in memory only.
	Store GuardStore
	// Now tells the time; nil means time.Now.
	Now    func() time.Time
	Logger *zap.Logger

	mu     sync.Mutex
	loaded bool
	set    []guard
	dirty  bool
	// responders are listed addresses that answered the probe as
	// responders, and when: left out of routes for a guard lifetime.
	responders map[string]time.Time
	saveMu     sync.Mutex // orders saves without holding mu during I/O
}

// guard is one kept first hop, as stored.
type guard struct {
	Addr     string    `json:"addr"`
	Chosen   time.Time `json:"chosen"`
	Failures int       `json:"failures,omitempty"`
	// Vetted is set once the guard answered the responder probe as a
	// relay (see vet).
	Vetted bool `json:"vetted,omitempty"`
}

// guardFile is the stored form of a guard set.
type guardFile struct {
	Guards []guard `json:"guards"`
}

func (g *Guards) count() int {
	if g.Count <= 0 {
		return DefaultGuards
	}
	return g.Count
}

func (g *Guards) lifetime() time.Duration { return orDefault(g.Lifetime, DefaultGuardLifetime) }

func (g *Guards) maxFailures() int {
	if g.MaxFailures <= 0 {
		return DefaultGuardFailures
	}
	return g.MaxFailures
}

func (g *Guards) now() time.Time {
	if g.Now == nil {
		return time.Now()
	}
	return g.Now()
}

// Load reads the stored set, once; later calls do nothing. The Dialer
// calls it before its first route; an entrance may call it at start to
// surface storage errors early. A set that cannot be read is logged and
// replaced by fresh guards, since an initiator must not stop working
// over it.
func (g *Guards) Load(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.loaded {
		return nil
	}
	g.loaded = true
	if g.Store == nil {
		return nil
	}
	// A route given up on must not cost the stored guards: they would be
	// replaced by fresh ones and overwritten.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), guardSaveTimeout)
	defer cancel()
	data, err := g.Store.Load(ctx)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(data) == 0) {
		return nil
	}
	if err == nil {
		var f guardFile
		if err = json.Unmarshal(data, &f); err == nil {
			g.set = f.Guards
			return nil
		}
	}
	err = fmt.Errorf("loading guards: %w", err)
	loggerOr(g.Logger).Warn("choosing fresh guards", zap.Error(err))
	return err
}

// choose returns the first hop of a route: a guard among candidates, or
// "" when none can serve this route (the responder is the only guard,
// say). listed are the relays the manager lists, less this initiator; a
// guard not among them is gone and replaced. New guards are drawn from
// candidates with rnd.
func (g *Guards) choose(listed, candidates []string, rnd *random) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	kept := g.set[:0]
	for _, gd := range g.set {
		if slices.Contains(listed, gd.Addr) && now.Sub(gd.Chosen) < g.lifetime() && gd.Failures < g.maxFailures() {
			kept = append(kept, gd)
		}
	}
	if len(kept) != len(g.set) {
		g.dirty = true
	}
	g.set = kept
	for len(g.set) < g.count() {
		fresh := make([]string, 0, len(candidates))
		for _, c := range candidates {
			if !slices.ContainsFunc(g.set, func(gd guard) bool { return gd.Addr == c }) && !g.isResponderLocked(c, now) {
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 {
			break
		}
		g.set = append(g.set, guard{Addr: fresh[rnd.IntN(len(fresh))], Chosen: now})
		g.dirty = true
	}
	usable := make([]string, 0, len(g.set))
	for _, gd := range g.set {
		if slices.Contains(candidates, gd.Addr) {
			usable = append(usable, gd.Addr)
		}
	}
	if len(usable) == 0 {
		return ""
	}
	return usable[rnd.IntN(len(usable))]
}

// vet makes sure that first, when it is a guard not vetted yet, is a
// relay before a route goes over it, with the responder probe (est with
// an empty list: a relay answers fail, a responder ok) sent through d
// within timeout. Listed as a relay by a manager that does not probe (a
// 2003 manager, or one with verification off), a responder would end
// every route of this initiator at its own site, and the client would
// get that site's bytes. A guard that answers ok is dropped, left out of
// routes (see IsResponder) for a guard lifetime, and ErrResponder
// returned; any other answer vets it, once for its lifetime. A nil
// Guards vets nothing.
func (g *Guards) vet(ctx context.Context, first string, d *net.Dialer, timeout time.Duration) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	i := slices.IndexFunc(g.set, func(gd guard) bool { return gd.Addr == first })
	unvetted := i >= 0 && !g.set[i].Vetted
	g.mu.Unlock()
	if !unvetted {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := probeRelay(pctx, d, first, DefaultMaxLine)
	cancel()
	if err == nil && ctx.Err() != nil {
		return nil // cut short: vet it another time
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dirty = true
	if err == nil {
		for i := range g.set {
			if g.set[i].Addr == first {
				g.set[i].Vetted = true
			}
		}
		return nil
	}
	g.set = slices.DeleteFunc(g.set, func(gd guard) bool { return gd.Addr == first })
	if g.responders == nil {
		g.responders = make(map[string]time.Time)
	}
	g.responders[first] = g.now()
	return err
}

// IsResponder reports whether addr, listed as a relay, answered the
// probe as a responder within the last guard lifetime: routes leave it
// out.
func (g *Guards) IsResponder(addr string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.isResponderLocked(addr, g.now())
}

func (g *Guards) isResponderLocked(addr string, now time.Time) bool {
	at, ok := g.responders[addr]
	if ok && now.Sub(at) >= g.lifetime() {
		delete(g.responders, addr)
		return false
	}
	return ok
}

// report records how a dial to first went: a failed dial counts against
// the guard, a successful one clears its count.
func (g *Guards) report(first string, dialFailed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.set {
		gd := &g.set[i]
		if gd.Addr != first {
			continue
		}
		switch {
		case dialFailed:
			gd.Failures++
			g.dirty = true
		case gd.Failures > 0:
			gd.Failures = 0
			g.dirty = true
		}
	}
}

// save writes the set to the store when it changed.
func (g *Guards) save(ctx context.Context) error {
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	g.mu.Lock()
	if !g.dirty || g.Store == nil {
		g.mu.Unlock()
		return nil
	}
	data, err := json.Marshal(guardFile{Guards: g.set})
	g.dirty = false
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encoding guards: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), guardSaveTimeout)
	defer cancel()
	if err := g.Store.Save(ctx, data); err != nil {
		g.mu.Lock()
		g.dirty = true // try again after the next route
		g.mu.Unlock()
		return fmt.Errorf("saving guards: %w", err)
	}
	return nil
}

// Current returns the guards kept now.
func (g *Guards) Current() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, len(g.set))
	for i, gd := range g.set {
		out[i] = gd.Addr
	}
	return out
}
