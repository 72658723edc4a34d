package caddymodule

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// What the admin API, the status page and the registry-size metric read:
// the managers and relays of the running config. A manager's entry lives
// in a UsagePool keyed by its config name, so its registry-size history
// survives a reload that keeps the name.
var liveManagers = caddy.NewUsagePool()

// liveManager is a named manager as the operator tools see it. The
// manager itself is swapped in by the newest config that names it.
type liveManager struct {
	name    string
	history sizeHistory

	mu sync.Mutex
	// bound are the managers of this name in the loaded configs, oldest
	// first; the newest is the one shown.
	bound []*gunshu.Manager

	// The sampler starts with the first bound manager, so its first
	// sample has a registry to read.
	ctx     context.Context
	stop    context.CancelFunc
	started bool
	done    chan struct{}
}

// instrumentManager connects m to the metrics, the info logs of
// registrations and evictions, the admin API and the status page, under
// its config name. Call it in Provision, before m serves, and call the
// returned untrack in Cleanup. It sets m.Observer, m.OnTest and
// m.OnRegister; m.Registry must be set (the operator tools read it while m
// serves).
func instrumentManager(ctx caddy.Context, name string, m *gunshu.Manager, log *zap.Logger) (untrack func(), err error) {
	if m.Registry == nil {
		return nil, fmt.Errorf("manager %q has no registry", name)
	}
	if m.Observer, err = newMetricsObserver(ctx); err != nil {
		return nil, err
	}
	m.OnTest = func(_ string, ok bool, _ time.Duration) {
		gunshuMetrics.patrolTests.WithLabelValues(name, testResult(ok)).Inc()
	}
	m.OnRegister = func(addr string, err error) {
		gunshuMetrics.registrations.WithLabelValues(name, registrationResult(err)).Inc()
		if err == nil {
			// Services are public: the manager may name them.
			log.Info("service registered", zap.String("manager", name), zap.String("service", addr))
		}
	}
	val, _, err := liveManagers.LoadOrNew(name, func() (caddy.Destructor, error) {
		return newLiveManager(name), nil
	})
	if err != nil {
		return nil, err
	}
	lm := val.(*liveManager)
	lm.bind(m)
	return func() {
		lm.unbind(m)
		_, _ = liveManagers.Delete(name)
	}, nil
}

func (lm *liveManager) bind(m *gunshu.Manager) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.bound = append(lm.bound, m)
	if !lm.started {
		lm.started = true
		go lm.sample(lm.ctx, sampleInterval)
	}
}

// unbind drops m. A config that failed to load unbinds its manager and
// leaves the running one shown.
func (lm *liveManager) unbind(m *gunshu.Manager) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for i, b := range lm.bound {
		if b == m {
			lm.bound = append(lm.bound[:i], lm.bound[i+1:]...)
			return
		}
	}
}

// manager is the newest bound manager, nil if none.
func (lm *liveManager) manager() *gunshu.Manager {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if len(lm.bound) == 0 {
		return nil
	}
	return lm.bound[len(lm.bound)-1]
}

func newLiveManager(name string) *liveManager {
	ctx, cancel := context.WithCancel(context.Background())
	return &liveManager{name: name, ctx: ctx, stop: cancel, done: make(chan struct{})}
}

// Destruct stops the sampler when no config names the manager any more.
func (lm *liveManager) Destruct() error {
	lm.stop()
	lm.mu.Lock()
	started := lm.started
	lm.mu.Unlock()
	if started {
		<-lm.done
	}
	return nil
}

// lookupManager finds the live manager of that config name.
func lookupManager(name string) (*liveManager, *gunshu.Manager, bool) {
	var found *liveManager
	liveManagers.Range(func(key, val any) bool {
		if key == name {
			found = val.(*liveManager)
			return false
		}
		return true
	})
	if found == nil {
		return nil, nil, false
	}
	m := found.manager()
	return found, m, m != nil
}

// liveManagerList returns the live managers, sorted by name.
func liveManagerList() []*liveManager {
	var out []*liveManager
	liveManagers.Range(func(_, val any) bool {
		if lm := val.(*liveManager); lm.manager() != nil {
			out = append(out, lm)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// liveApps are the gunshu apps of the configs loaded now, oldest first:
// one, or two while a reload is under way.
var liveApps = struct {
	sync.Mutex
	list []*liveApp
}{}

type liveApp struct {
	app     *App
	untrack []func()
}

// newestApp is the app of the config loaded last, nil if none.
func newestApp() *App {
	liveApps.Lock()
	defer liveApps.Unlock()
	if len(liveApps.list) == 0 {
		return nil
	}
	return liveApps.list[len(liveApps.list)-1].app
}
