package caddymodule

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
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
	manager atomic.Pointer[gunshu.Manager]
	history sizeHistory

	stop context.CancelFunc
	done chan struct{}
}

// instrumentManager connects m to the metrics, the info logs of
// registrations and evictions, the admin API and the status page, under
// its config name. Call it in Provision, before m serves, and call the
// returned untrack in Cleanup. It sets m.Observer, m.OnTest and
// m.OnRegister.
func instrumentManager(ctx caddy.Context, name string, m *gunshu.Manager, log *zap.Logger) (untrack func(), err error) {
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
	lm.manager.Store(m)
	return func() {
		// A newer config may have bound the name already: leave it.
		lm.manager.CompareAndSwap(m, nil)
		_, _ = liveManagers.Delete(name)
	}, nil
}

func newLiveManager(name string) *liveManager {
	ctx, cancel := context.WithCancel(context.Background())
	lm := &liveManager{name: name, stop: cancel, done: make(chan struct{})}
	go lm.sample(ctx, sampleInterval)
	return lm
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
	<-lm.done
	return nil
}

// size is the number of services registered now.
func (lm *liveManager) size(ctx context.Context) (int, error) {
	m := lm.manager.Load()
	if m == nil {
		return 0, errNotRunning
	}
	addrs, err := registryOf(m).Addrs(ctx)
	return len(addrs), err
}

// registryOf is the manager's registry; a zero Manager makes its
// MemoryRegistry on first use, and an empty one stands for it till then.
func registryOf(m *gunshu.Manager) gunshu.Registry {
	if m.Registry == nil {
		return &gunshu.MemoryRegistry{}
	}
	return m.Registry
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
	m := found.manager.Load()
	return found, m, m != nil
}

// liveManagerList returns the live managers, sorted by name.
func liveManagerList() []*liveManager {
	var out []*liveManager
	liveManagers.Range(func(_, val any) bool {
		if lm := val.(*liveManager); lm.manager.Load() != nil {
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

// liveRelay is a relay handler as the admin API shows it.
type liveRelay struct {
	relay     *gunshu.Relay
	registrar *gunshu.Registrar // nil when the relay registers nowhere
}

var liveRelays = struct {
	sync.Mutex
	set map[*liveRelay]struct{}
}{set: make(map[*liveRelay]struct{})}

// instrumentRelay connects r to the metrics and lists it, with its
// registrar (which may be nil), in the admin API. Call it in Provision,
// before r serves, and call the returned untrack in Cleanup. It sets
// r.Observer.
func instrumentRelay(ctx caddy.Context, r *gunshu.Relay, reg *gunshu.Registrar) (untrack func(), err error) {
	if r.Observer, err = newMetricsObserver(ctx); err != nil {
		return nil, err
	}
	lr := &liveRelay{relay: r, registrar: reg}
	liveRelays.Lock()
	liveRelays.set[lr] = struct{}{}
	liveRelays.Unlock()
	return func() {
		liveRelays.Lock()
		delete(liveRelays.set, lr)
		liveRelays.Unlock()
	}, nil
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

func relayViews() []relayView {
	liveRelays.Lock()
	relays := make([]*liveRelay, 0, len(liveRelays.set))
	for lr := range liveRelays.set {
		relays = append(relays, lr)
	}
	liveRelays.Unlock()
	out := make([]relayView, 0, len(relays))
	for _, lr := range relays {
		v := relayView{Registrations: []registrationView{}, ActiveSessions: lr.relay.Active()}
		if lr.registrar != nil {
			v.Advertise = lr.registrar.Advertise
			v.Registrations = registrationViews(lr.registrar.Status())
		} else if len(lr.relay.Self) > 0 {
			v.Advertise = lr.relay.Self[0]
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Advertise < out[j].Advertise })
	return out
}
