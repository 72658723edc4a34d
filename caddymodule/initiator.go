package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(InitiatorHandler))
}

// InitiatorHandler is the layer4 handler gunshu_initiator: an entrance (a
// gunshu.Entrance) that carries every connection it accepts through a
// fresh route of randomly chosen relays to a responder. With a fixed
// responder, every connection goes there as it is; without one the
// entrance is a SOCKS5 and HTTP proxy, and each client names its
// responder. Clients need to know nothing of Gunshu.
type InitiatorHandler struct {
	// The route options: manager (required), max_relays, route_continue,
	// attempts, guards, guard_lifetime, cover.
	RouteConfig
	// Responder is the address (host:port) every route ends at. Empty
	// makes the entrance a SOCKS5 and HTTP proxy.
	Responder string `json:"responder,omitempty"`
	// Username and Password, when either is set, are asked of proxy
	// clients (SOCKS5 RFC 1929, or HTTP Proxy-Authorization Basic).
	// Placeholders such as {env.GUNSHU_PASSWORD} are replaced. Only in
	// proxy mode.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// HandshakeTimeout bounds reading a proxy request and each answer to
	// it. Default: 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// DialTimeout bounds connecting to the first hop. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// RouteTimeout bounds the wait for the route to answer. Default: 30s.
	RouteTimeout caddy.Duration `json:"route_timeout,omitempty"`
	// IdleTimeout ends a session after this long without a byte in
	// either direction. Default: 0, never.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// EarlyReply answers SOCKS5 and HTTP CONNECT requests with success
	// at once instead of after the route's ok: clients that wait for the
	// answer before sending save a route round trip, but a route that
	// cannot be built then ends with a reset rather than an error reply.
	EarlyReply bool `json:"early_reply,omitempty"`
	// MaxSilent bounds the routes a fixed-responder entrance holds at
	// once for clients that have not sent a byte; while one is free, and
	// such routes are not being wasted (clients leaving without a byte,
	// beyond a burst of max_silent and one a second), a route starts at
	// accept. Default: 16.
	MaxSilent int `json:"max_silent,omitempty"`
	// SilentWait is how long a fixed-responder entrance that cannot start
	// a route at accept waits for a client's first bytes before it asks
	// for a place anyway (protocols whose server speaks first).
	// Default: 500ms.
	SilentWait caddy.Duration `json:"silent_wait,omitempty"`
	// The session limits count client connections. They are kept per
	// config: after a reload the sessions still open count only against
	// the old config's limits.
	SessionLimits
	// LogAddresses adds the client's address to session logs.
	LogAddresses bool `json:"log_addresses,omitempty"`

	entrance *gunshu.Entrance
	routes   *routeDialer
	log      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*InitiatorHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.gunshu_initiator",
		New: func() caddy.Module { return new(InitiatorHandler) },
	}
}

// Provision resolves the addresses and credentials and builds the
// entrance. Its cover and guards are settled once every relay of the
// config is known (see prepare).
func (h *InitiatorHandler) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger(h)
	if h.Manager == "" {
		return nil // Validate names what is missing
	}
	repl := caddy.NewReplacer()
	manager, err := resolveAddr(repl, "manager", h.Manager)
	if err != nil {
		return err
	}
	var responder, cover string
	if h.Responder != "" {
		if responder, err = resolveAddr(repl, "responder", h.Responder); err != nil {
			return err
		}
	}
	if h.Cover != "" {
		if cover, err = resolveAddr(repl, "cover", h.Cover); err != nil {
			return err
		}
	}
	username, err := resolveSecret(repl, "username", h.Username)
	if err != nil {
		return err
	}
	password, err := resolveSecret(repl, "password", h.Password)
	if err != nil {
		return err
	}
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	h.routes = newRouteDialer(ctx, &h.RouteConfig, manager, cover, gunshu.Timeouts{Dial: time.Duration(h.DialTimeout), Route: time.Duration(h.RouteTimeout)}, h.log)
	h.entrance = &gunshu.Entrance{
		Observer:         observer,
		Dialer:           h.routes.dialer,
		Responder:        responder,
		Username:         username,
		Password:         password,
		HandshakeTimeout: time.Duration(h.HandshakeTimeout),
		IdleTimeout:      time.Duration(h.IdleTimeout),
		EarlyReply:       h.EarlyReply,
		SilentWait:       time.Duration(h.SilentWait),
		MaxSilent:        h.MaxSilent,
		SessionLimiter:   h.SessionLimits.newLimiter(),
		Logger:           h.log,
		LogAddresses:     h.LogAddresses,
	}
	if err := h.entrance.Validate(); err != nil {
		return err
	}
	app, err := gunshuApp(ctx)
	if err != nil {
		return err
	}
	h.routes.app = app
	h.routes.app.addEntrance(h)
	return nil
}

// resolveSecret replaces the placeholders of a credential. Its value is
// never part of an error.
func resolveSecret(repl *caddy.Replacer, field, raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	s, err := repl.ReplaceOrErr(raw, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return s, nil
}

// prepare gives the entrance its cover and guards, and warns when it has
// no cover. The app calls it at Start; the first connection calls it too,
// in case the layer4 app starts first.
func (h *InitiatorHandler) prepare() { h.routes.ready() }

// Cleanup releases this config's reference to the shared guards.
func (h *InitiatorHandler) Cleanup() error {
	if h.routes != nil {
		h.routes.release()
	}
	return nil
}

// Validate checks the configuration.
func (h *InitiatorHandler) Validate() error {
	if h.Manager == "" {
		return errors.New("manager is required: the host:port of the manager that lists the relays")
	}
	err := notNegative(
		durationOption("handshake_timeout", h.HandshakeTimeout),
		durationOption("dial_timeout", h.DialTimeout),
		durationOption("route_timeout", h.RouteTimeout),
		durationOption("idle_timeout", h.IdleTimeout),
		durationOption("silent_wait", h.SilentWait),
		countOption("max_silent", h.MaxSilent),
	)
	if err != nil {
		return err
	}
	switch {
	case h.Responder != "" && h.EarlyReply:
		return errors.New("early_reply needs proxy mode: a fixed-target entrance sends its clients no reply")
	case h.Responder == "" && (h.SilentWait != 0 || h.MaxSilent != 0):
		return errors.New("silent_wait and max_silent need a fixed responder: a proxy client must send its request before any route is built")
	}
	if err := h.RouteConfig.validate(); err != nil {
		return err
	}
	return h.SessionLimits.validate()
}

// Handle carries the connection through a route. The session runs on its
// own goroutine and a duplicate of the underlying socket (see
// serveHandedOff), so both ends of the client's leg splice.
func (h *InitiatorHandler) Handle(cx *layer4.Connection, _ layer4.Handler) error {
	h.prepare()
	serveHandedOff(cx, h.log, "entrance session", h.entrance)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gunshu_initiator [<responder>] {
//		manager <host:port>
//		responder <host:port>
//		username <name>
//		password <password>
//		handshake_timeout <duration>
//		max_relays <n>
//		route_continue <probability>
//		attempts <n>
//		guards <n>
//		guard_lifetime <duration>
//		cover <host:port>
//		list_stale_limit <duration>|off
//		dial_timeout <duration>
//		route_timeout <duration>
//		idle_timeout <duration>
//		early_reply
//		silent_wait <duration>
//		max_silent <n>
//		max_sessions <n>
//		max_sessions_per_ip <n>
//		log_addresses
//	}
//
// Without a responder the entrance is a SOCKS5 and HTTP proxy; username
// and password then protect it. max_relays is a hard bound (default 20,
// -1 for the whole list); guards 0 turns guards off.
func (h *InitiatorHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // handler name
	seen := map[string]bool{}
	if d.NextArg() {
		h.Responder = d.Val()
		seen["responder"] = true
		if d.NextArg() {
			return d.Errf("gunshu_initiator takes at most one argument (the responder), got extra %q", d.Val())
		}
	}
	return parseOptions(d, "gunshu_initiator", seen, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "responder":
			h.Responder, err = oneArg(d)
		case "username":
			h.Username, err = oneArg(d)
		case "password":
			h.Password, err = oneArg(d)
		case "handshake_timeout":
			h.HandshakeTimeout, err = durationArg(d)
		case "dial_timeout":
			h.DialTimeout, err = durationArg(d)
		case "route_timeout":
			h.RouteTimeout, err = durationArg(d)
		case "idle_timeout":
			h.IdleTimeout, err = durationArg(d)
		case "log_addresses":
			err = flagArg(d, &h.LogAddresses)
		case "early_reply":
			err = flagArg(d, &h.EarlyReply)
		case "silent_wait":
			h.SilentWait, err = durationArg(d)
		case "max_silent":
			h.MaxSilent, err = intArg(d)
		default:
			if known, err := h.RouteConfig.unmarshalOption(d, opt); known {
				return true, err
			}
			return h.SessionLimits.unmarshalOption(d, opt)
		}
		return true, err
	})
}

// Interface guards
var (
	_ caddy.Provisioner     = (*InitiatorHandler)(nil)
	_ caddy.Validator       = (*InitiatorHandler)(nil)
	_ caddy.CleanerUpper    = (*InitiatorHandler)(nil)
	_ layer4.NextHandler    = (*InitiatorHandler)(nil)
	_ caddyfile.Unmarshaler = (*InitiatorHandler)(nil)
)
