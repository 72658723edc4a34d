package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(StatusHandler{})
	httpcaddyfile.RegisterHandlerDirective("gunshu_status", parseStatusHandler)
	httpcaddyfile.RegisterDirectiveOrder("gunshu_status", httpcaddyfile.Before, "respond")
}

// StatusHandler serves the status page of a gunshu manager: its services,
// their health and test latency, the registry's size over the last hour
// and the route outcomes of this process. A request that accepts
// application/json but not text/html (or asks ?format=json) gets the same
// data as JSON.
type StatusHandler struct {
	// Manager is the config name of the manager to show. It may be omitted
	// when the config has exactly one manager.
	Manager string `json:"manager,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (StatusHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gunshu_status",
		New: func() caddy.Module { return new(StatusHandler) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is terminal.
func (h *StatusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("gunshu_status answers GET and HEAD"))
	}
	lm, err := h.manager()
	if err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	snap, err := takeSnapshot(r.Context(), lm)
	if err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, snap)
	}
	var page bytes.Buffer
	if err := renderStatusPage(&page, snap); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page needs nothing from anywhere: say so to the browser.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	_, err = page.WriteTo(w)
	return err
}

// manager finds the configured manager, or the only one.
func (h *StatusHandler) manager() (*liveManager, error) {
	if h.Manager != "" {
		lm, _, ok := lookupManager(h.Manager)
		if !ok {
			return nil, fmt.Errorf("no gunshu manager named %q is running", h.Manager)
		}
		return lm, nil
	}
	managers := liveManagerList()
	switch len(managers) {
	case 0:
		return nil, errors.New("no gunshu manager is running")
	case 1:
		return managers[0], nil
	}
	return nil, fmt.Errorf("%d gunshu managers are running: name one in gunshu_status", len(managers))
}

// wantsJSON reports whether the client asked for JSON rather than a page.
func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	gunshu_status [<manager>]
func (h *StatusHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		h.Manager = d.Val()
	}
	if d.NextArg() {
		return d.Errf("gunshu_status takes at most one argument (the manager's name), got extra %q", d.Val())
	}
	if d.NextBlock(0) {
		return d.Errf("gunshu_status takes no block, got %q", d.Val())
	}
	return nil
}

func parseStatusHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(StatusHandler)
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return s, err
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*StatusHandler)(nil)
	_ caddyfile.Unmarshaler       = (*StatusHandler)(nil)
)
