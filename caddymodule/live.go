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

// sampleInterval is the time between two samples of a registry's size;
// historyWindow is how far back the status page charts them.
var (
	sampleInterval = time.Minute
	historyWindow  = time.Hour
)

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

// sample records the registry's size now and then every interval.
func (lm *liveManager) sample(ctx context.Context, interval time.Duration) {
	defer close(lm.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		lm.sampleNow(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (lm *liveManager) sampleNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := lm.size(ctx); err == nil {
		lm.history.add(time.Now(), n)
	}
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

// size is the number of services registered now.
func (lm *liveManager) size(ctx context.Context) (int, error) {
	m := lm.manager()
	if m == nil {
		return 0, errNotRunning
	}
	addrs, err := m.Registry.Addrs(ctx)
	return len(addrs), err
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

// sizeSample is the size of a registry at one moment.
type sizeSample struct {
	Time     time.Time `json:"time"`
	Services int       `json:"services"`
}

// sizeHistory keeps the samples of the last historyWindow.
type sizeHistory struct {
	mu      sync.Mutex
	samples []sizeSample
}

func (h *sizeHistory) add(now time.Time, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cut := 0
	for cut < len(h.samples) && now.Sub(h.samples[cut].Time) > historyWindow {
		cut++
	}
	h.samples = append(h.samples[cut:], sizeSample{Time: now, Services: n})
}

func (h *sizeHistory) snapshot() []sizeSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sizeSample(nil), h.samples...)
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

// instrument connects the app's managers to the metrics, the logs and the
// operator tools, and makes its relays visible to the admin API. App calls
// it at the end of Provision; Cleanup undoes it.
func (a *App) instrument(ctx caddy.Context) error {
	la := &liveApp{app: a}
	liveApps.Lock()
	defer liveApps.Unlock()
	liveApps.list = append(liveApps.list, la)
	for _, name := range a.ManagerNames() {
		m, err := a.Manager(name)
		if err != nil {
			return err
		}
		untrack, err := instrumentManager(ctx, name, m, a.log)
		if err != nil {
			return err
		}
		la.untrack = append(la.untrack, untrack)
	}
	return nil
}

// Cleanup releases what instrument took: the app's managers and relays
// leave the admin API, unless a newer config still has them.
func (a *App) Cleanup() error {
	for _, key := range a.limiterKeys {
		_ = releaseLimiter(key)
	}
	liveApps.Lock()
	defer liveApps.Unlock()
	for i, la := range liveApps.list {
		if la.app == a {
			for _, untrack := range la.untrack {
				untrack()
			}
			liveApps.list = append(liveApps.list[:i], liveApps.list[i+1:]...)
			break
		}
	}
	return nil
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

// relayView is one relay handler in GET /gunshu/relays.
type relayView struct {
	Advertise      string             `json:"advertise,omitempty"`
	Registrations  []registrationView `json:"registrations"`
	ActiveSessions int                `json:"active_sessions"`
}

// registrationView is the latest registration with one manager.
type registrationView struct {
	Manager string `json:"manager"`
	// LastAttempt is absent until the first attempt ends.
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	OK          bool       `json:"ok"`
	Error       string     `json:"error,omitempty"`
	Successes   int        `json:"successes"`
}

func registrationViews(status []gunshu.Registration) []registrationView {
	out := make([]registrationView, 0, len(status))
	for _, st := range status {
		v := registrationView{Manager: st.Manager, OK: st.OK, Error: st.Error, Successes: st.Successes}
		if !st.When.IsZero() {
			v.LastAttempt = &st.When
		}
		out = append(out, v)
	}
	return out
}

// relayViews describes the relay handlers of the newest config.
func relayViews() []relayView {
	out := []relayView{}
	a := newestApp()
	if a == nil {
		return out
	}
	for _, r := range a.Relays() {
		out = append(out, relayView{
			Advertise:      r.AdvertisedAddr(),
			Registrations:  registrationViews(r.Registrations()),
			ActiveSessions: r.Active(),
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Advertise < out[j].Advertise })
	return out
}
