package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Transport is a reverse_proxy transport that reaches every upstream
// through a fresh Gunshu route: the upstream is the route's responder. It
// is Caddy's HTTP transport with its dialing replaced, so TLS to the
// upstream, HTTP/2, keep-alive and buffer settings work as usual; TLS to a
// responder keeps the relays from reading the traffic.
//
// Each new upstream connection is a new route; kept-alive connections go
// on using theirs.
type Transport struct {
	// Manager is the address of the Gunshu manager that lists the relays.
	Manager string `json:"manager,omitempty"`
	// MaxRelays caps the relays offered to one route (default 5; -1
	// offers the manager's whole list).
	MaxRelays int `json:"max_relays,omitempty"`
	// Attempts is how many fresh random routes are tried before a dial
	// fails (default 3).
	Attempts int `json:"attempts,omitempty"`

	reverseproxy.HTTPTransport

	dialer *gunshu.Dialer
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.gunshu",
		New: func() caddy.Module { return new(Transport) },
	}
}

// Provision builds the HTTP transport and gives it the Gunshu dialer.
func (t *Transport) Provision(ctx caddy.Context) error {
	if err := t.validate(); err != nil {
		return err
	}
	if err := t.HTTPTransport.Provision(ctx); err != nil {
		return err
	}
	t.dialer = &gunshu.Dialer{
		Manager:   t.Manager,
		MaxRelays: t.MaxRelays,
		Attempts:  t.Attempts,
		Timeouts:  gunshu.Timeouts{Dial: time.Duration(t.DialTimeout)},
		Logger:    ctx.Logger(t),
	}
	// No environment proxy either: a forward proxy would see the upstream
	// that the route exists to hide.
	t.Transport.Proxy = nil
	t.Transport.DialContext = t.dial
	return nil
}

// validate refuses the HTTP transport options that would dial around the
// route or that cannot apply to it.
func (t *Transport) validate() error {
	if t.Manager == "" {
		return errors.New("gunshu transport: manager address is required")
	}
	if _, err := gunshu.ParseAddr(t.Manager); err != nil {
		return fmt.Errorf("gunshu transport: manager: %w", err)
	}
	if t.Attempts < 0 {
		return fmt.Errorf("gunshu transport: attempts must not be negative, got %d", t.Attempts)
	}
	h := &t.HTTPTransport
	unsupported := map[string]bool{
		"versions 3 (HTTP/3 runs over UDP, outside the route)":             slices.Contains(h.Versions, "3"),
		"proxy_protocol (it would tell the upstream the client's address)": h.ProxyProtocol != "",
		"network_proxy (a proxy would see the upstream)":                   len(h.NetworkProxyRaw) > 0 || h.ForwardProxyURL != "",
		"resolvers (the route's last relay resolves the upstream's name)":  h.Resolver != nil,
		"local_address (routes start from relays)":                         h.LocalAddress != "",
		"read_timeout and write_timeout":                                   h.ReadTimeout != 0 || h.WriteTimeout != 0,
		"placeholders in tls_server_name":                                  h.TLS != nil && strings.Contains(h.TLS.ServerName, "{"),
	}
	var errs []error
	for what, set := range unsupported {
		if set {
			errs = append(errs, fmt.Errorf("gunshu transport does not support %s", what))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// dial builds a route to the upstream address. A failure is a DialError,
// so the reverse proxy may retry it on another upstream.
func (t *Transport) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	conn, err := t.dialer.DialContext(ctx, addr)
	if err != nil {
		return nil, reverseproxy.NewDialError(err)
	}
	return conn, nil
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens. Every
// subdirective of the http transport is accepted too.
//
//	transport gunshu {
//		manager    <address>
//		max_relays <count>
//		attempts   <count>
//		<http transport subdirectives...>
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume transport name
	name := d.Token()
	var passOn []caddyfile.Token
	for d.NextBlock(0) {
		switch d.Val() {
		case "manager":
			if !d.AllArgs(&t.Manager) {
				return d.ArgErr()
			}
		case "max_relays", "attempts":
			key := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil {
				return d.Errf("%s: %q is not a number", key, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if key == "max_relays" {
				t.MaxRelays = n
			} else {
				t.Attempts = n
			}
		default:
			passOn = append(passOn, d.NextSegment()...)
		}
	}
	if len(passOn) == 0 {
		return nil
	}
	// The http transport reads its own subdirectives from a block of
	// their own.
	last := passOn[len(passOn)-1]
	tokens := []caddyfile.Token{name, {File: name.File, Line: name.Line, Text: "{"}}
	tokens = append(tokens, passOn...)
	tokens = append(tokens, caddyfile.Token{File: last.File, Line: last.Line + 1, Text: "}"})
	return t.HTTPTransport.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
}

// Interface guards
var (
	_ caddy.Provisioner         = (*Transport)(nil)
	_ caddy.CleanerUpper        = (*Transport)(nil)
	_ caddyfile.Unmarshaler     = (*Transport)(nil)
	_ reverseproxy.TLSTransport = (*Transport)(nil)
	_ reverseproxy.H2CTransport = (*Transport)(nil)
	_ http.RoundTripper         = (*Transport)(nil)
)
