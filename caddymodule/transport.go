package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
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
	// The route options, as gunshu_initiator has them: manager
	// (required), max_relays, route_continue, attempts, guards (kept in
	// Caddy's storage), guard_lifetime, cover (by default the relay of
	// this config that registers with manager), list_stale_limit.
	RouteConfig

	reverseproxy.HTTPTransport

	routes *routeDialer
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
	repl := caddy.NewReplacer()
	manager, err := resolveAddr(repl, "manager", t.Manager)
	if err != nil {
		return fmt.Errorf("gunshu transport: %w", err)
	}
	var cover string
	if t.Cover != "" {
		if cover, err = resolveAddr(repl, "gunshu transport: cover", t.Cover); err != nil {
			return err
		}
	}
	t.routes = newRouteDialer(ctx, &t.RouteConfig, manager, cover, gunshu.Timeouts{Dial: time.Duration(t.DialTimeout)}, ctx.Logger(t))
	if app, err := ctx.AppIfConfigured("gunshu"); err == nil {
		// The app's relays are known once the whole config is
		// provisioned: at the first route.
		t.routes.app = app.(*App)
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
	if _, err := resolveAddr(caddy.NewReplacer(), "manager", t.Manager); err != nil {
		return fmt.Errorf("gunshu transport: %w", err)
	}
	if err := t.RouteConfig.validate(); err != nil {
		return fmt.Errorf("gunshu transport: %w", err)
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
	conn, err := t.routes.ready().DialContext(ctx, addr)
	if err != nil {
		return nil, reverseproxy.NewDialError(err)
	}
	return conn, nil
}

// Cleanup releases this config's reference to the shared guards and
// closes the HTTP transport's idle connections.
func (t *Transport) Cleanup() error {
	if t.routes != nil {
		t.routes.release()
	}
	return t.HTTPTransport.Cleanup()
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens. Every
// subdirective of the http transport is accepted too.
//
//	transport gunshu {
//		manager        <address>
//		max_relays     <count>
//		route_continue <probability>
//		attempts       <count>
//		guards         <count>
//		guard_lifetime <duration>
//		cover          <address>
//		list_stale_limit <duration>|off
//		<http transport subdirectives...>
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume transport name
	name := d.Token()
	var passOn []caddyfile.Token
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		known, err := t.RouteConfig.unmarshalOption(d, opt)
		if err != nil {
			return err
		}
		if !known {
			passOn = append(passOn, d.NextSegment()...)
		} else if err := once(d, seen, opt); err != nil {
			return err
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
