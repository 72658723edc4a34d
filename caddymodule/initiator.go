package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(Initiator))
}

// Initiator is a fixed-target entrance: it carries every connection it
// accepts through a fresh route of randomly chosen relays to one
// responder. Clients need to know nothing of Gunshu.
type Initiator struct {
	// Manager is the address (host:port) of the manager to list relays
	// from. Required.
	Manager string `json:"manager,omitempty"`
	// Responder is the address (host:port) every route ends at. Required.
	Responder string `json:"responder,omitempty"`
	// MaxRelays caps the relays offered to one route. Default: 5.
	MaxRelays int `json:"max_relays,omitempty"`
	// Attempts is how many fresh random routes are tried. Default: 3.
	Attempts int `json:"attempts,omitempty"`
	// DialTimeout bounds connecting to the first hop. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// RouteTimeout bounds the wait for the route to answer. Default: 30s.
	RouteTimeout caddy.Duration `json:"route_timeout,omitempty"`
	// LogAddresses adds the client's address to session logs.
	LogAddresses bool `json:"log_addresses,omitempty"`

	entrance *gunshu.Entrance
	log      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Initiator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.gunshu_initiator",
		New: func() caddy.Module { return new(Initiator) },
	}
}

// Provision resolves the addresses and builds the entrance.
func (h *Initiator) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger(h)
	if h.Manager == "" || h.Responder == "" {
		return nil // Validate names what is missing
	}
	repl := caddy.NewReplacer()
	manager, err := resolveAddr(repl, "manager", h.Manager)
	if err != nil {
		return err
	}
	responder, err := resolveAddr(repl, "responder", h.Responder)
	if err != nil {
		return err
	}
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	h.entrance = &gunshu.Entrance{
		Observer: observer,
		Dialer: &gunshu.Dialer{
			Manager:   manager,
			MaxRelays: h.MaxRelays,
			Attempts:  h.Attempts,
			Timeouts:  gunshu.Timeouts{Dial: time.Duration(h.DialTimeout), Route: time.Duration(h.RouteTimeout)},
			Logger:    h.log,
		},
		Responder:    responder,
		Logger:       h.log,
		LogAddresses: h.LogAddresses,
	}
	return nil
}

// Validate checks the configuration.
func (h *Initiator) Validate() error {
	switch {
	case h.Manager == "":
		return fmt.Errorf("manager is required: the host:port of the manager that lists the relays")
	case h.Responder == "":
		return fmt.Errorf("responder is required: the host:port every route ends at")
	case h.MaxRelays < 0:
		return errNegative("max_relays", h.MaxRelays)
	case h.Attempts < 0:
		return errNegative("attempts", h.Attempts)
	case h.DialTimeout < 0:
		return errNegative("dial_timeout", time.Duration(h.DialTimeout))
	case h.RouteTimeout < 0:
		return errNegative("route_timeout", time.Duration(h.RouteTimeout))
	}
	return nil
}

// Handle carries the connection through a route. The session runs on the
// underlying socket, so both ends of the client's leg splice.
func (h *Initiator) Handle(cx *layer4.Connection, _ layer4.Handler) error {
	conn, buffered, err := detach(cx)
	if err != nil {
		h.log.Debug("entrance session not started", zap.String("error", gunshu.Redacted(err)))
		return nil
	}
	_ = h.entrance.ServeBuffered(conn, buffered)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gunshu_initiator [<responder>] {
//		manager <host:port>
//		responder <host:port>
//		max_relays <n>
//		attempts <n>
//		dial_timeout <duration>
//		route_timeout <duration>
//		log_addresses
//	}
func (h *Initiator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // handler name
	seen := map[string]bool{}
	if d.NextArg() {
		h.Responder = d.Val()
		seen["responder"] = true
		if d.NextArg() {
			return d.Errf("gunshu_initiator takes at most one argument (the responder), got extra %q", d.Val())
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, opt); err != nil {
			return err
		}
		var err error
		switch opt {
		case "manager":
			h.Manager, err = oneArg(d)
		case "responder":
			h.Responder, err = oneArg(d)
		case "max_relays":
			h.MaxRelays, err = intArg(d)
		case "attempts":
			h.Attempts, err = intArg(d)
		case "dial_timeout":
			h.DialTimeout, err = durationArg(d)
		case "route_timeout":
			h.RouteTimeout, err = durationArg(d)
		case "log_addresses":
			err = noArgs(d)
			h.LogAddresses = true
		default:
			return d.Errf("unknown gunshu_initiator option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func errNegative[T any](field string, v T) error {
	return fmt.Errorf("%s must not be negative, got %v", field, v)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Initiator)(nil)
	_ caddy.Validator       = (*Initiator)(nil)
	_ layer4.NextHandler    = (*Initiator)(nil)
	_ caddyfile.Unmarshaler = (*Initiator)(nil)
)
