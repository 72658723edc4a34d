package gunshu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Initiator defaults.
const (
	DefaultMaxRelays = 5
	DefaultAttempts  = 3
	DefaultListTTL   = 5 * time.Second
)

// ErrNoRelays means the manager listed no usable relay.
var ErrNoRelays = errors.New("no relays listed")

// FetchList asks the manager at addr for its list, within timeout.
func FetchList(ctx context.Context, manager string, timeout time.Duration, l Limits) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(timeout, DefaultCommandTimeout))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", manager)
	if err != nil {
		return nil, fmt.Errorf("dialing manager: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(listLine); err != nil {
		return nil, fmt.Errorf("sending list: %w", err)
	}
	lr := newLineReader(conn, nil, l.maxLine())
	defer lr.release()
	list, err := lr.readList(l.maxList())
	if err != nil {
		return nil, fmt.Errorf("reading list: %w", err)
	}
	return list, nil
}

// Route is an established route in forward mode.
type Route struct {
	// Conn is the connection to the first hop.
	Conn net.Conn
	// Rest holds bytes that arrived with the first hop's ok; they belong
	// to the stream, before anything read from Conn.
	Rest []byte
	// Attempts is how many routes were tried, this one included.
	Attempts int
	// Setup is the time from the request to forward mode.
	Setup time.Duration
}

// Dialer is the Initiator: it gets the list from the manager and builds a
// route through randomly chosen relays to a responder.
type Dialer struct {
	// Manager is the manager's address.
	Manager string
	// MaxRelays caps the relays offered to a route: a random subset of the
	// list of at most this size is sent. 0 means DefaultMaxRelays; a
	// negative value sends the whole list, as the 2003 specification does.
	MaxRelays int
	// Attempts is how many fresh random routes are tried on failure.
	Attempts int
	// Timeouts bound the list request (Command), dialing the first hop
	// (Dial) and the wait for the route's answer (Route).
	Timeouts Timeouts
	// ListTTL is how long a fetched list is reused: fewer requests tell
	// the manager less about when this initiator opens routes. 0 means
	// DefaultListTTL; negative fetches a list for every route.
	ListTTL time.Duration
	// Exclude are addresses never used as relays by this initiator (its
	// own relay's, for instance).
	Exclude []string
	Limits  Limits
	// Rand picks the routes; nil means a cryptographically secure source.
	Rand rand.Source
	// NetDialer connects to the first hop (set LocalAddr here).
	NetDialer *net.Dialer
	Logger    *zap.Logger

	once     sync.Once
	rnd      *random
	log      *zap.Logger
	mu       sync.Mutex
	list     []string
	listTime time.Time
}

func (d *Dialer) init() {
	d.once.Do(func() {
		d.rnd = newRandom(d.Rand)
		d.log = loggerOr(d.Logger)
		if d.NetDialer == nil {
			d.NetDialer = &net.Dialer{}
		}
	})
}

// DialContext builds a route to responder and returns the stream to it.
// It has the shape http.Transport wants once the network is dropped.
func (d *Dialer) DialContext(ctx context.Context, responder string) (net.Conn, error) {
	r, err := d.Establish(ctx, responder)
	if err != nil {
		return nil, err
	}
	if len(r.Rest) == 0 {
		return r.Conn, nil
	}
	return &stream{Conn: r.Conn, rest: r.Rest}, nil
}

// Establish builds a route to responder, trying up to Attempts fresh
// random routes, and switches it to forward mode.
func (d *Dialer) Establish(ctx context.Context, responder string) (*Route, error) {
	d.init()
	start := time.Now()
	target, err := ParseAddr(responder)
	if err != nil {
		return nil, fmt.Errorf("responder: %w", err)
	}
	attempts := d.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		relays, err := d.relays(ctx, attempt > 1)
		if err != nil {
			return nil, err
		}
		first, list, err := d.pickRoute(relays, target)
		if err != nil {
			return nil, err
		}
		conn, rest, err := establish(ctx, d.NetDialer, openPolicy, first, list, d.Timeouts, d.Limits)
		if err == nil {
			if _, err = conn.Write(forwardLine); err == nil {
				return &Route{Conn: conn, Rest: rest, Attempts: attempt, Setup: time.Since(start)}, nil
			}
			conn.Close()
		}
		lastErr = err
		// Redacted: the socket's own end is the first relay's predecessor.
		d.log.Debug("route attempt failed", zap.Int("attempt", attempt), zap.String("error", redactedError(err)))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("no route after %d attempts: %w", attempts, lastErr)
}

// relays returns the manager's list, from the cache when it is fresh and
// fresh is false.
func (d *Dialer) relays(ctx context.Context, refresh bool) ([]string, error) {
	ttl := d.ListTTL
	if ttl == 0 {
		ttl = DefaultListTTL
	}
	d.mu.Lock()
	cached, age := d.list, time.Since(d.listTime)
	d.mu.Unlock()
	if !refresh && ttl > 0 && cached != nil && age < ttl {
		return cached, nil
	}
	list, err := FetchList(ctx, d.Manager, d.Timeouts.command(), d.Limits)
	if err != nil {
		if cached != nil && age < 2*ttl {
			return cached, nil // a manager hiccup need not stop traffic
		}
		return nil, err
	}
	d.mu.Lock()
	d.list, d.listTime = list, time.Now()
	d.mu.Unlock()
	return list, nil
}

// pickRoute chooses the relays offered to one route: the first hop and the
// est list, in which the responder sits at a random position.
func (d *Dialer) pickRoute(relays []string, responder string) (string, []string, error) {
	candidates := make([]string, 0, len(relays))
	seen := make(map[string]struct{}, len(relays))
	for _, a := range relays {
		if _, dup := seen[a]; dup || a == responder || contains(d.Exclude, a) {
			continue
		}
		seen[a] = struct{}{}
		candidates = append(candidates, a)
	}
	if len(candidates) == 0 {
		return "", nil, ErrNoRelays
	}
	k := d.routeSize(len(candidates))
	// A partial Fisher-Yates shuffle draws k distinct relays uniformly.
	for i := range k {
		j := i + d.rnd.IntN(len(candidates)-i)
		candidates[i], candidates[j] = candidates[j], candidates[i]
	}
	first, others := candidates[0], candidates[1:k]
	pos := d.rnd.IntN(len(others) + 1)
	list := make([]string, 0, len(others)+1)
	list = append(append(append(list, others[:pos]...), responder), others[pos:]...)
	return first, list, nil
}

// routeSize is how many of n listed relays one route is offered.
func (d *Dialer) routeSize(n int) int {
	switch {
	case d.MaxRelays < 0:
		return n
	case d.MaxRelays == 0:
		return min(n, DefaultMaxRelays)
	}
	return min(n, d.MaxRelays)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
