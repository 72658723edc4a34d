package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(RedactFilter{})
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
)
