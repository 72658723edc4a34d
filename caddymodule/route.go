package caddymodule

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// RouteConfig are the options of the routes an initiator builds, shared by
// gunshu_initiator and the gunshu reverse_proxy transport. PRIVACY.md has
// the figures behind the defaults.
type RouteConfig struct {
	// Manager is the address (host:port) of the manager to list relays
	// from. Required.
	Manager string `json:"manager,omitempty"`
	// MaxRelays is the hard bound on the relays offered to one route;
	// how many are offered below it is drawn at random so that a relay's
	// list tells it little of its position. Default: 20. -1 offers the
	// whole list, as the 2003 specification does: then every first hop
	// knows it is first. A low bound has the same flaw in the routes
	// that reach it.
	MaxRelays int `json:"max_relays,omitempty"`
	// RouteContinue is the chance that a relay passes a route on to
	// another relay rather than to the responder, in [0, 1); the mean
	// route holds 1/(1-route_continue) relays. Default: 0.7.
	RouteContinue float64 `json:"route_continue,omitempty"`
	// Attempts is how many fresh random routes are tried. Default: 3.
	Attempts int `json:"attempts,omitempty"`
	// Guards is how many first hops are kept for all routes (as Tor's
	// guards), stored in Caddy's storage so a restart keeps them.
	// Default: 1; 0 picks a fresh first hop for every route.
	Guards *int `json:"guards,omitempty"`
	// GuardLifetime is how long a guard is kept at most. Default: 720h.
	GuardLifetime caddy.Duration `json:"guard_lifetime,omitempty"`
	// Cover is the advertised address of a relay registered by this
	// server: routes leave from its address and never offer it. Default:
	// the relay of this config that registers with Manager, if any.
	Cover string `json:"cover,omitempty"`
	// ListStaleLimit is how long routes keep using the last good list of
	// relays while the manager does not answer or lists fewer than half
	// of them (a manager that restarted, a registry that came back
	// empty). Default: 5m; negative ("off" in a Caddyfile): only what
	// the manager lists now.
	ListStaleLimit caddy.Duration `json:"list_stale_limit,omitempty"`
}

func (c *RouteConfig) validate() error {
	switch {
	case c.MaxRelays < -1:
		return fmt.Errorf("max_relays must be -1 (the whole list) or more, got %d", c.MaxRelays)
	case c.GuardLifetime > 0 && c.guards() == 0:
		return fmt.Errorf("guard_lifetime is set but guards is 0 (off)")
	}
	err := notNegative(
		countOption("attempts", c.Attempts),
		countOption("guards", c.guards()),
		durationOption("guard_lifetime", c.GuardLifetime),
	)
	if err != nil {
		return err
	}
	return validRouteContinue(c.RouteContinue)
}

// validRouteContinue is the Dialer's own rule for route_continue.
func validRouteContinue(p float64) error {
	d := gunshu.Dialer{RouteContinue: p}
	return d.ValidateRouteSize()
}

func (c *RouteConfig) guards() int {
	if c.Guards == nil {
		return gunshu.DefaultGuards
	}
	return *c.Guards
}

// unmarshalOption reads opt into c when it is one of its options.
func (c *RouteConfig) unmarshalOption(d *caddyfile.Dispenser, opt string) (bool, error) {
	var err error
	switch opt {
	case "manager":
		c.Manager, err = oneArg(d)
	case "max_relays":
		var s string
		if s, err = oneArg(d); err == nil {
			if c.MaxRelays, err = strconv.Atoi(s); err != nil || c.MaxRelays < -1 {
				err = d.Errf("max_relays: want a count, or -1 for the whole list, got %q", s)
			}
		}
	case "route_continue":
		var s string
		if s, err = oneArg(d); err == nil {
			if c.RouteContinue, err = strconv.ParseFloat(s, 64); err != nil {
				err = d.Errf("route_continue: want a probability at least 0 and below 1, got %q", s)
			} else if err = validRouteContinue(c.RouteContinue); err != nil {
				err = d.Err(err.Error())
			}
		}
	case "attempts":
		c.Attempts, err = intArg(d)
	case "guards":
		var n int
		n, err = intArg(d)
		c.Guards = &n
	case "guard_lifetime":
		c.GuardLifetime, err = durationArg(d)
	case "cover":
		c.Cover, err = oneArg(d)
	case "list_stale_limit":
		var s string
		if s, err = oneArg(d); err == nil {
			c.ListStaleLimit = -1
			if s != "off" {
				dur, perr := caddy.ParseDuration(s)
				if perr != nil || dur <= 0 {
					return true, d.Errf("list_stale_limit: want a positive duration or off, got %q", s)
				}
				c.ListStaleLimit = caddy.Duration(dur)
			}
		}
	default:
		return false, nil
	}
	return true, err
}

// routeDialer completes a Dialer with its cover and guards at the first
// route (or when the app starts), once every relay of the config is
// provisioned: an entrance may be provisioned before the relay that
// covers it.
type routeDialer struct {
	dialer   *gunshu.Dialer
	cover    string // explicit cover, resolved
	guards   int
	lifetime time.Duration
	app      *App                   // nil outside a config with the gunshu app
	storage  gunshu.KeyValueStorage // keeps the guards
	log      *zap.Logger

	mu        sync.Mutex
	prepared  bool
	guardsKey string
}

// newRouteDialer builds the Dialer of c, with manager and cover already
// resolved.
func newRouteDialer(ctx caddy.Context, c *RouteConfig, manager, cover string, timeouts gunshu.Timeouts, log *zap.Logger) *routeDialer {
	rd := &routeDialer{
		dialer: &gunshu.Dialer{
			Manager:        manager,
			MaxRelays:      c.MaxRelays,
			RouteContinue:  c.RouteContinue,
			Attempts:       c.Attempts,
			ListStaleLimit: time.Duration(c.ListStaleLimit),
			Timeouts:       timeouts,
			Logger:         log,
		},
		cover:    cover,
		guards:   c.guards(),
		lifetime: time.Duration(c.GuardLifetime),
		log:      log,
	}
	if s := ctx.Storage(); s != nil {
		rd.storage = s
	}
	return rd
}

// ready returns the Dialer, completing it on first use.
func (rd *routeDialer) ready() *gunshu.Dialer {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.prepared {
		return rd.dialer
	}
	rd.prepared = true
	cover := rd.cover
	if cover == "" && rd.app != nil {
		cover = rd.app.coverFor(rd.dialer.Manager)
	}
	rd.dialer.Cover = cover
	if w := rd.dialer.CoverWarning(); w != "" {
		rd.log.Warn(w, zap.String("manager", rd.dialer.Manager))
	} else {
		rd.log.Info("routes leave with cover", zap.String("cover", cover))
	}
	if rd.guards > 0 {
		rd.dialer.Guards, rd.guardsKey = sharedGuards(rd.dialer.Manager, cover, rd.guards, rd.lifetime, rd.storage, rd.log)
	}
	return rd.dialer
}

// release drops this config's reference to the shared guards.
func (rd *routeDialer) release() {
	rd.mu.Lock()
	key := rd.guardsKey
	rd.guardsKey = ""
	rd.mu.Unlock()
	if key != "" {
		_, _ = guardSets.Delete(key)
	}
}

// guardSets holds the guard sets in use, by storage key and settings:
// initiators that send routes from one address share their guards (a
// first hop that sees one address use several guards learns more), and a
// reload keeps them without reading the storage again.
var guardSets = caddy.NewUsagePool()

func sharedGuards(manager, cover string, count int, lifetime time.Duration, storage gunshu.KeyValueStorage, log *zap.Logger) (*gunshu.Guards, string) {
	storeKey := gunshu.GuardKey(manager, cover)
	key := fmt.Sprintf("%s|%d|%d", storeKey, count, lifetime)
	val, _, _ := guardSets.LoadOrNew(key, func() (caddy.Destructor, error) {
		g := &gunshu.Guards{Count: count, Lifetime: lifetime, Logger: log}
		if storage != nil {
			g.Store = gunshu.StorageGuardStore(storage, storeKey)
		}
		return pooled[*gunshu.Guards]{g}, nil
	})
	return val.(pooled[*gunshu.Guards]).value, key
}
