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
	caddy.RegisterModule(new(ResponderHandler))
}

// ResponderHandler is the layer4 handler gunshu_responder: it ends Gunshu
// routes in front of another handler (a gunshu.Responder consumes est,
// answers ok and waits for forward) and calls the next handler with the
// application stream, so
//
//	route {
//		gunshu_responder
//		proxy 127.0.0.1:8080
//	}
//
// exposes a local service through the network. It answers test with ok.
type ResponderHandler struct {
	// MaxList caps the entries of an est list. Default: 1024.
	MaxList int `json:"max_list,omitempty"`
	// HandshakeTimeout bounds reading est and forward. Default: 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// LogAddresses adds the last relay's address to session logs.
	LogAddresses bool `json:"log_addresses,omitempty"`
	// The session limits count the handshake and the stream, until the
	// next handler returns. The peer is a route's last relay, so
	// max_sessions_per_ip bounds what one relay may open. They are kept
	// per config: after a reload the streams still open count only
	// against the old config's limits.
	SessionLimits

	responder *gunshu.Responder
	log       *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*ResponderHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.gunshu_responder",
		New: func() caddy.Module { return new(ResponderHandler) },
	}
}

// Provision builds the responder.
func (h *ResponderHandler) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger(h)
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	h.responder = &gunshu.Responder{
		Observer:       observer,
		MessageLimits:  gunshu.MessageLimits{MaxList: h.MaxList},
		Timeouts:       gunshu.Timeouts{Command: time.Duration(h.HandshakeTimeout)},
		SessionLimiter: h.SessionLimits.newLimiter(),
		Logger:         h.log,
		LogAddresses:   h.LogAddresses,
	}
	return nil
}

// Handle performs the handshake and passes the stream on. The stream is
// closed when the next handler returns, which ends the session's log
// line. Failures, the next handler's included, are logged here without
// addresses and not returned: caddy-l4 would log the peer's address.
func (h *ResponderHandler) Handle(cx *layer4.Connection, next layer4.Handler) error {
	conn, buffered, ok := detachOrLog(cx, h.log, "responder session")
	if !ok {
		return nil
	}
	stream, err := h.responder.Handshake(conn, buffered)
	if err != nil {
		return nil
	}
	defer stream.Close()
	if err := next.Handle(cx.Wrap(stream)); err != nil {
		// caddy-l4 would log the error with the last relay's address.
		fields := []zap.Field{zap.String("error", gunshu.RedactedError(err))}
		if h.LogAddresses {
			fields = append(fields, zap.String("remote", conn.RemoteAddr().String()))
		}
		h.log.Error("handling the stream", fields...)
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gunshu_responder {
//		max_list <n>
//		handshake_timeout <duration>
//		max_sessions <n>
//		max_sessions_per_ip <n>
//		log_addresses
//	}
func (h *ResponderHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // handler name
	if d.NextArg() {
		return d.Errf("gunshu_responder takes no arguments, got %q", d.Val())
	}
	return parseOptions(d, "gunshu_responder", nil, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "max_list":
			h.MaxList, err = intArg(d)
		case "handshake_timeout":
			h.HandshakeTimeout, err = durationArg(d)
		case "log_addresses":
			err = flagArg(d, &h.LogAddresses)
		default:
			return h.SessionLimits.unmarshalOption(d, opt)
		}
		return true, err
	})
}

// Validate checks the configuration.
func (h *ResponderHandler) Validate() error {
	if err := notNegative(durationOption("handshake_timeout", h.HandshakeTimeout), countOption("max_list", h.MaxList)); err != nil {
		return err
	}
	return h.SessionLimits.validate()
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ResponderHandler)(nil)
	_ caddy.Validator       = (*ResponderHandler)(nil)
	_ layer4.NextHandler    = (*ResponderHandler)(nil)
	_ caddyfile.Unmarshaler = (*ResponderHandler)(nil)
)
