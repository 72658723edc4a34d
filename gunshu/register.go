package gunshu

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultRegisterInterval is how often a relay registers again.
const DefaultRegisterInterval = 60 * time.Second

// Registration is the latest outcome of registering with one manager.
type Registration struct {
	Manager   string    `json:"manager"`
	When      time.Time `json:"when"`
	OK        bool      `json:"ok"`
	Error     string    `json:"error,omitempty"`
	Successes int       `json:"successes"`
}

// Registrar keeps a relay registered: with every manager at start, retried
// with backoff until it succeeds, and again every Interval.
type Registrar struct {
	// Managers are the managers' addresses.
	Managers []string
	// Advertise is the address registered.
	Advertise string
	// Interval between registrations; 0 means DefaultRegisterInterval.
	Interval time.Duration
	// Timeout bounds one registration (verification included).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failure.
	MinBackoff, MaxBackoff time.Duration
	// Dialer connects to the managers. nil means a dialer that connects
	// from the advertised IP when it is an address of this machine, so a
	// manager that requires the source to match (the Caddy default) sees
	// the address registered even on a host with several addresses.
	Dialer *net.Dialer
	Logger *zap.Logger

	mu     sync.Mutex
	status map[string]Registration
}

// Run registers with every manager until ctx ends.
func (r *Registrar) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range r.Managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.keep(ctx, m)
		}()
	}
	wg.Wait()
}

func (r *Registrar) keep(ctx context.Context, manager string) {
	log := loggerOr(r.Logger)
	interval := orDefault(r.Interval, DefaultRegisterInterval)
	minBackoff := orDefault(r.MinBackoff, 500*time.Millisecond)
	maxBackoff := orDefault(r.MaxBackoff, min(30*time.Second, interval))
	backoff := minBackoff
	d := r.Dialer
	if d == nil {
		d = sourceDialer(r.Advertise)
	}
	for {
		err := register(ctx, d, manager, r.Advertise, r.Timeout)
		if ctx.Err() != nil {
			return
		}
		r.record(manager, err)
		wait := interval
		if err != nil {
			log.Warn("registration failed", zap.String("manager", manager), zap.String("advertise", r.Advertise), zap.Error(err), zap.Duration("retry_in", backoff))
			wait = backoff
			backoff = min(backoff*2, maxBackoff)
		} else {
			log.Debug("registered", zap.String("manager", manager), zap.String("advertise", r.Advertise))
			backoff = minBackoff
		}
		// Jitter spreads the relays' registrations over time.
		wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (r *Registrar) record(manager string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		r.status = make(map[string]Registration)
	}
	st := r.status[manager]
	st.Manager, st.When, st.OK, st.Error = manager, time.Now(), err == nil, ""
	if err != nil {
		st.Error = err.Error()
	} else {
		st.Successes++
	}
	r.status[manager] = st
}

// Status returns the latest registration result per manager.
func (r *Registrar) Status() []Registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Registration, 0, len(r.Managers))
	for _, m := range r.Managers {
		st, ok := r.status[m]
		if !ok {
			st = Registration{Manager: m}
		}
		out = append(out, st)
	}
	return out
}
