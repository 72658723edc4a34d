package caddymodule

import (
	"net"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper lets a Caddy server be a Gunshu responder on its own
// port: a connection that opens with est (or test) completes the Gunshu
// handshake and then goes on into the server as an ordinary connection;
// any other connection passes through untouched, every byte intact. Put
// it before the tls wrapper, so the route is set up in the clear and TLS
// runs inside it, end to end between the client and this server.
//
// Connections are sorted (by gunshu.SniffCommand, as the gunshu matcher
// does) and handshakes run off the accept path, so a slow or silent peer
// never holds up the others.
type ListenerWrapper struct {
	// Timeout bounds the wait for a connection's first bytes and for the
	// Gunshu handshake (default 10s). A connection still silent then is
	// passed through to the server, which applies its own timeouts.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// MaxPending bounds the connections being sorted or shaking hands at
	// once (default 1024); further connections wait in the kernel's queue.
	MaxPending int `json:"max_pending,omitempty"`
	// LogAddresses adds the last relay's address to session logs.
	LogAddresses bool `json:"log_addresses,omitempty"`

	responder *gunshu.Responder
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.gunshu",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision sets up the responder.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) error {
	if err := notNegative(durationOption("timeout", lw.Timeout), countOption("max_pending", lw.MaxPending)); err != nil {
		return err
	}
	lw.logger = ctx.Logger(lw)
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	lw.responder = &gunshu.Responder{
		Observer:     observer,
		Timeouts:     gunshu.Timeouts{Command: time.Duration(lw.Timeout)},
		Logger:       lw.logger,
		LogAddresses: lw.LogAddresses,
	}
	return nil
}

// WrapListener wraps ln.
func (lw *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return waitingListener{lw.responder.ListenShared(ln, lw.MaxPending)}
}

// waitingListener is a gunshu.Listener whose Close also waits for its
// goroutines, as the server that closes it expects.
type waitingListener struct{ *gunshu.Listener }

func (l waitingListener) Close() error {
	err := l.Listener.Close()
	l.Wait()
	return err
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens.
//
//	gunshu {
//		timeout       <duration>
//		max_pending   <count>
//		log_addresses
//	}
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	if d.NextArg() {
		return d.Errf("gunshu listener wrapper takes no arguments, got %q", d.Val())
	}
	return parseOptions(d, "gunshu listener wrapper", nil, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "timeout":
			lw.Timeout, err = durationArg(d)
		case "max_pending":
			lw.MaxPending, err = intArg(d)
		case "log_addresses":
			err = flagArg(d, &lw.LogAddresses)
		default:
			return false, nil
		}
		return true, err
	})
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
)
