package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(Responder))
}

// Responder ends Gunshu routes in front of another handler: it consumes
// est, answers ok, waits for forward and calls the next handler with the
// application stream, so
//
//	route {
//		gunshu_responder
//		proxy 127.0.0.1:8080
//	}
//
// exposes a local service through the network. It answers test with ok.
type Responder struct {
	// MaxList caps the entries of an est list. Default: 1024.
	MaxList int `json:"max_list,omitempty"`
	// HandshakeTimeout bounds reading est and forward. Default: 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// LogAddresses adds the last relay's address to session logs.
	LogAddresses bool `json:"log_addresses,omitempty"`

	responder *gunshu.Responder
	log       *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Responder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.gunshu_responder",
		New: func() caddy.Module { return new(Responder) },
	}
}

// Provision builds the responder.
func (h *Responder) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger(h)
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	h.responder = &gunshu.Responder{
		Observer:     observer,
		Limits:       gunshu.Limits{MaxList: h.MaxList},
		Timeouts:     gunshu.Timeouts{Command: time.Duration(h.HandshakeTimeout)},
		Logger:       h.log,
		LogAddresses: h.LogAddresses,
	}
	return nil
}

// Handle performs the handshake and passes the stream on. The stream is
// closed when the next handler returns, which ends the session's log
// line; failures are logged by the responder, without addresses.
func (h *Responder) Handle(cx *layer4.Connection, next layer4.Handler) error {
	conn, buffered, err := detach(cx)
	if err != nil {
		h.log.Debug("responder session not started", zap.String("error", gunshu.Redacted(err)))
		return nil
	}
	stream, err := h.responder.Handshake(conn, buffered)
	if err != nil {
		return nil
	}
	defer stream.Close()
	return next.Handle(cx.Wrap(stream))
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gunshu_responder {
//		max_list <n>
//		handshake_timeout <duration>
//		log_addresses
//	}
func (h *Responder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // handler name
	if d.NextArg() {
		return d.Errf("gunshu_responder takes no arguments, got %q", d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, opt); err != nil {
			return err
		}
		var err error
		switch opt {
		case "max_list":
			h.MaxList, err = intArg(d)
		case "handshake_timeout":
			h.HandshakeTimeout, err = durationArg(d)
		case "log_addresses":
			err = noArgs(d)
			h.LogAddresses = true
		default:
			return d.Errf("unknown gunshu_responder option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the configuration.
func (h *Responder) Validate() error {
	if h.HandshakeTimeout < 0 {
		return errNegative("handshake_timeout", time.Duration(h.HandshakeTimeout))
	}
	if h.MaxList < 0 {
		return errNegative("max_list", h.MaxList)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Responder)(nil)
	_ caddy.Validator       = (*Responder)(nil)
	_ layer4.NextHandler    = (*Responder)(nil)
	_ caddyfile.Unmarshaler = (*Responder)(nil)
)
