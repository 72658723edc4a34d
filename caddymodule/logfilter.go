package caddymodule

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(RedactFilter{})
	caddy.RegisterModule(new(SafeEncoder))
}

// peerFields are the fields in which Caddy and caddy-l4 log a peer's
// address: caddy-l4's server and proxy ("remote"), Caddy's admin API
// ("remote_ip", "remote_port") and its HTTP logs (the request's). README
// ("Logs") lists the lines that carry them.
var peerFields = []string{
	"remote", "remote_ip", "remote_port", "client_ip",
	"request>remote_ip", "request>remote_port", "request>client_ip",
}

// SafeEncoder is Caddy's filter encoder set up so that a log names no
// peer: it deletes peerFields and passes the error field through
// RedactFilter, at every level. Syntax and options are the filter
// encoder's (wrap another encoder; add fields, which win over these);
// without any, it writes JSON (console on a terminal) as Caddy does:
//
//	log {
//		format gunshu
//	}
type SafeEncoder struct {
	logging.FilterEncoder
}

// CaddyModule returns the Caddy module information.
func (*SafeEncoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.gunshu",
		New: func() caddy.Module { return new(SafeEncoder) },
	}
}

// Provision adds the preset fields to those configured and sets up the
// filter encoder.
func (e *SafeEncoder) Provision(ctx caddy.Context) error {
	fields := make(map[string]json.RawMessage, len(peerFields)+1+len(e.FieldsRaw))
	for _, f := range peerFields {
		fields[f] = json.RawMessage(`{"filter":"delete"}`)
	}
	fields["error"] = json.RawMessage(`{"filter":"gunshu_redact"}`)
	for f, filter := range e.FieldsRaw {
		fields[f] = filter
	}
	e.FieldsRaw = fields
	return e.FilterEncoder.Provision(ctx)
}

// RedactFilter is a field filter for Caddy's filter log encoder that cuts
// every address out of a field's text: IPv4 and IPv6 addresses with or
// without a port, and host names with a port, each become "[address]".
// Put it on the error field: caddy-l4's and Caddy's errors carry socket
// addresses ("read tcp 192.0.2.1:7001->198.51.100.7:50123: connection
// reset by peer"), and those name a relay's or an entrance's clients.
// Fields that are nothing but an address are better deleted.
type RedactFilter struct{}

// CaddyModule returns the Caddy module information.
func (RedactFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.gunshu_redact",
		New: func() caddy.Module { return new(RedactFilter) },
	}
}

// Filter cuts the addresses out of a string field; the filter encoder
// hands an error field over as its text. Other fields pass unchanged.
func (RedactFilter) Filter(in zapcore.Field) zapcore.Field {
	if in.Type == zapcore.StringType {
		in.String = gunshu.RedactText(in.String)
	}
	return in
}

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens. Syntax:
//
//	<field> gunshu_redact
func (*RedactFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // filter name
	if d.NextArg() {
		return d.Errf("gunshu_redact takes no arguments, got %q", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ logging.LogFieldFilter = RedactFilter{}
	_ caddyfile.Unmarshaler  = (*RedactFilter)(nil)
	_ zapcore.Encoder        = (*SafeEncoder)(nil)
	_ caddy.Provisioner      = (*SafeEncoder)(nil)
	_ caddyfile.Unmarshaler  = (*SafeEncoder)(nil)
)
