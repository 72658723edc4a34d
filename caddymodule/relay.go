package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(RelayHandler))
}

// RelayHandler is the layer4 handler gunshu_relay: a Gunshu Service (a
// gunshu.Relay) that answers test, extends routes on est and forwards
// their bytes. With managers set it registers its advertised address with
// each of them once its listener is up, and again every register_interval.
type RelayHandler struct {
	// Managers are the managers' addresses (host:port) to register with.
	Managers []string `json:"managers,omitempty"`
	// Advertise is the host:port registered with the managers: the
	// address others reach this relay at. Required with managers.
	Advertise string `json:"advertise,omitempty"`
	// RegisterInterval is the time between registrations. Default: 60s.
	RegisterInterval caddy.Duration `json:"register_interval,omitempty"`
	// Allow lists CIDRs and host names of next hops this relay may dial
	// although a default-denied range (loopback, private, link-local,
	// CGNAT, multicast, unspecified) holds them.
	Allow []string `json:"allow,omitempty"`
	// Deny lists CIDRs and host names of next hops never dialed.
	Deny []string `json:"deny,omitempty"`
	// DenyPorts are the ports of next hops never dialed. Set, it replaces
	// the default list (25, SMTP, against spam); an empty list denies
	// none.
	DenyPorts *[]uint16 `json:"deny_ports,omitempty"`
	// IdleTimeout ends a route (with a reset on every hop) after this
	// long without a byte in either direction. Default: 0, never.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// The session limits count every connection the relay serves. With
	// advertise set they are kept across reloads, so the routes the old
	// config still carries count against the new one's limits.
	SessionLimits
	// MaxList caps the entries of an est list: the hops one connection
	// may ask this relay to help build. Default: 20, the most an entrance
	// offers.
	MaxList int `json:"max_list,omitempty"`
	// DialTimeout bounds connecting to the next hop. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// RouteTimeout bounds the wait for the rest of the route. Default: 30s.
	RouteTimeout caddy.Duration `json:"route_timeout,omitempty"`
	// WaitForOK makes the relay hold upstream's bytes past est until its
	// next hop answered ok, as a 2003 relay does. Off by default: bytes
	// pass at once (at most 64 KiB before ok), a round trip less per hop.
	WaitForOK bool `json:"wait_for_ok,omitempty"`
	// LogAddresses adds the predecessor's address to session logs. Off
	// by default: a relay's logs must not help to find its users.
	LogAddresses bool `json:"log_addresses,omitempty"`

	relay      *gunshu.Relay
	registrar  *gunshu.Registrar
	advertise  string
	limiterKey string
	log        *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*RelayHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.gunshu_relay",
		New: func() caddy.Module { return new(RelayHandler) },
	}
}

// Provision resolves the addresses, builds the relay and hands its
// registration loop to the gunshu app.
func (h *RelayHandler) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger(h)
	repl := caddy.NewReplacer()
	managers, err := resolveAddrs(repl, "managers", h.Managers)
	if err != nil {
		return err
	}
	if h.Advertise != "" {
		if h.advertise, err = resolveAddr(repl, "advertise", h.Advertise); err != nil {
			return err
		}
	}
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	h.relay = &gunshu.Relay{
		Observer:      observer,
		Policy:        gunshu.Policy{Allow: h.Allow, Deny: h.Deny, DenyPorts: h.denyPorts()},
		MessageLimits: gunshu.MessageLimits{MaxList: h.MaxList},
		Timeouts:      gunshu.Timeouts{Dial: time.Duration(h.DialTimeout), Route: time.Duration(h.RouteTimeout)},
		IdleTimeout:   time.Duration(h.IdleTimeout),
		WaitForOK:     h.WaitForOK,
		Logger:        h.log,
		LogAddresses:  h.LogAddresses,
	}
	if h.advertise != "" {
		// A list naming this relay is refused: no route loops through it.
		h.relay.Self = []string{h.advertise}
		h.relay.SessionLimiter, h.limiterKey, err = sharedLimiter("relay "+h.advertise, h.SessionLimits)
		if err != nil {
			return err
		}
	} else {
		h.relay.SessionLimiter = h.SessionLimits.newLimiter()
	}
	if len(managers) > 0 && h.advertise != "" {
		h.registrar = &gunshu.Registrar{
			Managers:  managers,
			Advertise: h.advertise,
			Interval:  time.Duration(h.RegisterInterval),
			Logger:    h.log,
		}
	}
	app, err := gunshuApp(ctx)
	if err != nil {
		return err
	}
	app.addRelay(h)
	return nil
}

// Validate checks the configuration.
func (h *RelayHandler) Validate() error {
	switch {
	case len(h.Managers) > 0 && h.Advertise == "":
		return fmt.Errorf("advertise is required with managers: the relay cannot know the address others reach it at; set advertise to the host:port of this server")
	case h.RegisterInterval > 0 && len(h.Managers) == 0:
		return fmt.Errorf("register_interval is set but there are no managers to register with")
	}
	err := notNegative(
		durationOption("register_interval", h.RegisterInterval),
		countOption("max_list", h.MaxList),
		durationOption("dial_timeout", h.DialTimeout),
		durationOption("route_timeout", h.RouteTimeout),
		durationOption("idle_timeout", h.IdleTimeout),
	)
	if err != nil {
		return err
	}
	if err := h.SessionLimits.validate(); err != nil {
		return err
	}
	return compilePolicy(h.Allow, h.Deny)
}

// denyPorts is the policy's port list: nil for the default.
func (h *RelayHandler) denyPorts() []uint16 {
	if h.DenyPorts == nil {
		return nil
	}
	return append([]uint16{}, *h.DenyPorts...)
}

// Cleanup releases this config's reference to the pooled limiter.
func (h *RelayHandler) Cleanup() error { return releaseLimiter(h.limiterKey) }

// Handle serves one connection as a relay. The session runs on its own
// goroutine and a duplicate of the underlying socket (see
// serveHandedOff), and logs itself without addresses, so the handler
// returns nil: caddy-l4 would log the client's address with an error.
func (h *RelayHandler) Handle(cx *layer4.Connection, _ layer4.Handler) error {
	serveHandedOff(cx, h.log, "relay session", h.relay)
	return nil
}

// AdvertisedAddr is the address the relay registers ("" without one).
func (h *RelayHandler) AdvertisedAddr() string { return h.advertise }

// Registrations are the latest outcomes of registering with each manager;
// nil for a relay that does not register.
func (h *RelayHandler) Registrations() []gunshu.Registration {
	if h.registrar == nil {
		return nil
	}
	return h.registrar.Status()
}

// Active is the number of connections the relay is serving.
func (h *RelayHandler) Active() int { return h.relay.Active() }

// listenerWait bounds how long a relay waits for its own listener before
// its first registration: the layer4 app may start after the gunshu app.
const listenerWait = 5 * time.Second

// keepRegistered waits until the relay answers on its advertised address
// (its listener is up), then registers until ctx ends. An advertised
// address that is not reachable from here (behind NAT, say) only delays
// the first registration by listenerWait.
func (h *RelayHandler) keepRegistered(ctx context.Context) {
	deadline := time.Now().Add(listenerWait)
	for time.Now().Before(deadline) {
		if _, err := gunshu.Ping(ctx, h.advertise, 500*time.Millisecond); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.registrar.Run(ctx)
}

// UnmarshalCaddyfile sets up the relay from Caddyfile tokens. Syntax:
//
//	gunshu_relay {
//		managers <host:port>...
//		advertise <host:port>
//		register_interval <duration>
//		allow <cidr|host>...
//		deny <cidr|host>...
//		deny_ports <port>...|none
//		max_list <n>
//		dial_timeout <duration>
//		route_timeout <duration>
//		idle_timeout <duration>
//		wait_for_ok
//		max_sessions <n>
//		max_sessions_per_ip <n>
//		log_addresses
//	}
//
// Every option may be given once, except managers, allow and deny, which
// add to their lists. deny_ports replaces the default (25); none denies no
// port.
func (h *RelayHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // handler name
	if d.NextArg() {
		return d.Errf("gunshu_relay takes no arguments, got %q: options go in a block", d.Val())
	}
	return parseOptions(d, "gunshu_relay", nil, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "managers":
			h.Managers, err = appendArgs(d, h.Managers)
		case "advertise":
			h.Advertise, err = oneArg(d)
		case "register_interval":
			h.RegisterInterval, err = durationArg(d)
		case "allow":
			h.Allow, err = appendArgs(d, h.Allow)
		case "deny":
			h.Deny, err = appendArgs(d, h.Deny)
		case "max_list":
			h.MaxList, err = intArg(d)
		case "dial_timeout":
			h.DialTimeout, err = durationArg(d)
		case "route_timeout":
			h.RouteTimeout, err = durationArg(d)
		case "idle_timeout":
			h.IdleTimeout, err = durationArg(d)
		case "deny_ports":
			var ports []uint16
			ports, err = portArgs(d)
			h.DenyPorts = &ports
		case "log_addresses":
			err = flagArg(d, &h.LogAddresses)
		case "wait_for_ok":
			err = flagArg(d, &h.WaitForOK)
		default:
			return h.SessionLimits.unmarshalOption(d, opt)
		}
		return true, err
	}, "managers", "allow", "deny")
}

// Interface guards
var (
	_ caddy.Provisioner     = (*RelayHandler)(nil)
	_ caddy.Validator       = (*RelayHandler)(nil)
	_ caddy.CleanerUpper    = (*RelayHandler)(nil)
	_ layer4.NextHandler    = (*RelayHandler)(nil)
	_ caddyfile.Unmarshaler = (*RelayHandler)(nil)
)
