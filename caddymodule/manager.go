package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(ManagerHandler))
}

// ManagerHandler answers reg and list for a manager of the gunshu app. The
// manager (its list, its patrol) belongs to the app; any number of
// listeners may serve it.
type ManagerHandler struct {
	// Manager is the name of the manager in the gunshu app. Default:
	// "default".
	Manager string `json:"manager,omitempty"`

	manager *gunshu.Manager
	log     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*ManagerHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.gunshu_manager",
		New: func() caddy.Module { return new(ManagerHandler) },
	}
}

// Provision looks the manager up in the gunshu app.
func (h *ManagerHandler) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger(h)
	app, err := ctx.App("gunshu")
	if err != nil {
		return fmt.Errorf("loading gunshu app: %w", err)
	}
	h.manager, err = app.(*App).Manager(h.Manager)
	return err
}

// Handle answers one exchange. Failures are the manager's to log; the
// handler returns nil so caddy-l4 does not log the peer's address.
func (h *ManagerHandler) Handle(cx *layer4.Connection, _ layer4.Handler) error {
	conn, buffered, err := detach(cx)
	if err != nil {
		h.log.Debug("manager exchange not started", zap.String("error", gunshu.Redacted(err)))
		return nil
	}
	_ = h.manager.ServeBuffered(conn, buffered)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gunshu_manager [<name>]
func (h *ManagerHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // handler name
	if d.NextArg() {
		h.Manager = d.Val()
		if d.NextArg() {
			return d.Errf("gunshu_manager takes at most one argument (the manager's name), got extra %q", d.Val())
		}
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("gunshu_manager takes no block, got %q: configure managers in the gunshu global option", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ManagerHandler)(nil)
	_ layer4.NextHandler    = (*ManagerHandler)(nil)
	_ caddyfile.Unmarshaler = (*ManagerHandler)(nil)
)
