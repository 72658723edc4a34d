package gunshu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
	"go.uber.org/zap"
)

// Initiator defaults.
const (
	DefaultAttempts = 3
	DefaultListTTL  = 5 * time.Second
)

// ErrNoRelays means the manager listed no usable relay.
var ErrNoRelays = errors.New("no relays listed")

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
	// MaxRelays is the hard bound on the relays offered to a route; how
	// many are offered below it is drawn from the law RouteSizeLaw gives. 0
	// means DefaultMaxRelays; a negative value offers the whole list, as
	// the 2003 specification does. A low bound defeats the law: a relay
	// that receives the largest possible list knows it is the first hop.
	MaxRelays int
	// RouteContinue is the chance that a relay passes the route on to
	// another relay rather than to the responder, in [0, 1); 0 means
	// DefaultRouteContinue. The mean route holds 1/(1-RouteContinue)
	// relays, and a corrupt relay on it is the first hop with probability
	// about 1-RouteContinue whatever list it receives.
	RouteContinue float64
	// Attempts is how many fresh random routes are tried on failure.
	Attempts int
	// Timeouts bound the list request (Command), dialing the first hop
	// (Dial) and the wait for the route's answer (Route).
	Timeouts Timeouts
	// ListTTL is how long a fetched list is reused: fewer requests tell
	// the manager less about when this initiator opens routes. 0 means
	// DefaultListTTL; negative fetches a list for every route.
	ListTTL time.Duration
	// ListStaleLimit is how long routes keep using the last good list
	// while the manager fails to answer or lists fewer than half of its
	// relays (see relays). 0 means DefaultListStaleLimit; negative uses
	// only what the manager lists now.
	ListStaleLimit time.Duration
	// Exclude are addresses never used as relays by this initiator.
	Exclude []string
	// Cover is the advertised address of a relay registered by this same
	// process. The initiator never offers it, and sends its routes from
	// its host (when NetDialer has no LocalAddr and that host is a local
	// IP), so a first hop cannot tell a route it opens from one that relay
	// passes on. Without cover, the first hop sees an address that is not
	// on the manager's list: an initiator's.
	Cover string
	// Guards keeps the first hops of this initiator; nil picks a fresh
	// random first hop for every route.
	Guards        *Guards
	MessageLimits MessageLimits
	// Rand picks the routes; nil means a cryptographically secure source.
	Rand rand.Source
	// NetDialer connects to the first hop (set LocalAddr here).
	NetDialer *net.Dialer
	Logger    *zap.Logger

	once   sync.Once
	rnd    *random
	log    *zap.Logger
	mu     sync.Mutex
	lists  listCache
	clock  func() time.Time // nil: time.Now; tests set it
	warned string           // the route-size warning last logged
	law    []float64        // routeSizeLaw(lawFor), kept for the next route
	lawFor int
}

func (d *Dialer) init() {
	d.once.Do(func() {
		d.rnd = newRandom(d.Rand)
		d.log = loggerOr(d.Logger)
		if d.NetDialer == nil {
			d.NetDialer = &net.Dialer{}
		}
		if d.NetDialer.LocalAddr == nil {
			if local := coverLocalAddr(d.Cover); local != nil {
				nd := *d.NetDialer
				nd.LocalAddr = local
				d.NetDialer = &nd
			}
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
// random routes, and switches it to forward mode. It sends forward right
// behind est, so the route is in forward mode as soon as ok is back.
func (d *Dialer) Establish(ctx context.Context, responder string) (*Route, error) {
	return d.open(ctx, responder, forwardOnly{})
}

// routeSender writes what each attempt at a route carries.
type routeSender interface {
	// send writes est, and whatever may follow it at once, to a fresh
	// route.
	send(conn net.Conn, est []byte) error
	// drop says the route on conn failed before ok: nothing more may
	// be written to it.
	drop(conn net.Conn)
}

// forwardOnly sends est and forward in one write.
type forwardOnly struct{}

func (forwardOnly) send(conn net.Conn, est []byte) error {
	_, err := conn.Write(append(est, forwardLine...))
	return err
}

func (forwardOnly) drop(net.Conn) {}

// open tries up to Attempts fresh random routes to responder, each
// carrying what sender writes, until one answers ok.
func (d *Dialer) open(ctx context.Context, responder string, sender routeSender) (*Route, error) {
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
	if d.Guards != nil {
		_ = d.Guards.Load(ctx) // logged by Load; fresh guards are chosen
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
		if err := d.Guards.vet(ctx, first, d.NetDialer, d.Timeouts.dial()); err != nil {
			// Said without the address: it is this initiator's first hop.
			d.log.Warn("a relay the manager lists answered as a responder does: it is no guard, and routes leave it out")
			lastErr = err
			continue
		}
		route, err := d.try(ctx, first, list, sender)
		d.reportFirstHop(ctx, first, err)
		if err == nil {
			route.Attempts, route.Setup = attempt, time.Since(start)
			return route, nil
		}
		lastErr = err
		// Redacted: the socket's own end is the first relay's predecessor.
		d.log.Debug("route attempt failed", zap.Int("attempt", attempt), zap.String("error", RedactedError(err)))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("no route after %d attempts: %w", attempts, lastErr)
}

// try connects to the first hop, lets sender write est, and waits for
// the route's ok within the route timeout.
func (d *Dialer) try(ctx context.Context, first string, list []string, sender routeSender) (*Route, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeouts.route())
	defer cancel()
	deadline, _ := ctx.Deadline()
	dialCtx, cancelDial := context.WithTimeout(ctx, d.Timeouts.dial())
	conn, err := openPolicy.Dial(dialCtx, first, d.NetDialer)
	cancelDial()
	if err != nil {
		if errors.Is(err, ErrPolicyDenied) {
			return nil, err
		}
		return nil, errDial{err}
	}
	_ = conn.SetDeadline(deadline)
	// The caller giving up must end the wait for ok as well.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := sender.send(conn, estMessage(list)); err != nil {
		sender.drop(conn)
		forward.Abort(conn)
		return nil, errNextHop{fmt.Errorf("sending est: %w", err)}
	}
	whole, lineLen, err := readEstReply(conn, d.MessageLimits.maxLine())
	if err == nil && !stop() {
		err = ctx.Err()
	}
	if err != nil {
		sender.drop(conn)
		forward.Abort(conn)
		return nil, errNextHop{fmt.Errorf("waiting for ok: %w", err)}
	}
	_ = conn.SetDeadline(time.Time{})
	return &Route{Conn: conn, Rest: whole[lineLen:]}, nil
}

// warnRouteSize logs RouteSizeWarning when it changes, so a manager
// listing too few relays is noticed without a line per route.
func (d *Dialer) warnRouteSize(listed int) {
	msg := d.RouteSizeWarning(listed)
	d.mu.Lock()
	changed := msg != d.warned
	d.warned = msg
	d.mu.Unlock()
	if changed && msg != "" {
		d.log.Warn("routes reveal their first hop", zap.String("why", msg))
	}
}

// reportFirstHop tells the guards how dialing first went. Only a failed
// dial counts: a failure further down can be any relay's doing.
func (d *Dialer) reportFirstHop(ctx context.Context, first string, err error) {
	if d.Guards == nil || ctx.Err() != nil {
		return
	}
	var dial errDial
	d.Guards.report(first, errors.As(err, &dial))
	if err := d.Guards.save(ctx); err != nil {
		d.log.Warn("guards not saved", zap.Error(err))
	}
}

// usable returns the listed relays this initiator may offer: duplicates,
// Exclude and Cover removed.
func (d *Dialer) usable(relays []string) []string {
	out := make([]string, 0, len(relays))
	seen := make(map[string]struct{}, len(relays))
	for _, a := range relays {
		if _, dup := seen[a]; dup || a == d.Cover || slices.Contains(d.Exclude, a) {
			continue
		}
		seen[a] = struct{}{}
		out = append(out, a)
	}
	return out
}

// pickRoute chooses the relays offered to one route from the usable
// listed relays: the first hop (a guard when there are guards) and the est
// list, in which the responder sits at a random position.
func (d *Dialer) pickRoute(listed []string, responder string) (string, []string, error) {
	candidates := make([]string, 0, len(listed))
	for _, a := range listed {
		if a != responder && !d.Guards.IsResponder(a) {
			candidates = append(candidates, a)
		}
	}
	if len(candidates) == 0 {
		return "", nil, ErrNoRelays
	}
	k := d.routeSize(len(candidates))
	drawn := 0
	if d.Guards != nil {
		if g := d.Guards.choose(listed, candidates, d.rnd); g != "" {
			i := slices.Index(candidates, g)
			candidates[0], candidates[i] = candidates[i], candidates[0]
			drawn = 1
		}
	}
	// A partial Fisher-Yates shuffle draws the others uniformly.
	for i := drawn; i < k; i++ {
		j := i + d.rnd.IntN(len(candidates)-i)
		candidates[i], candidates[j] = candidates[j], candidates[i]
	}
	first, others := candidates[0], candidates[1:k]
	pos := d.rnd.IntN(len(others) + 1)
	list := make([]string, 0, len(others)+1)
	list = append(append(append(list, others[:pos]...), responder), others[pos:]...)
	return first, list, nil
}
