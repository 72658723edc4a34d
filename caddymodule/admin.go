package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

var errNotRunning = errors.New("manager not running")

// AdminAPI serves the gunshu endpoints of Caddy's admin API:
//
//	GET    /gunshu/managers                         every manager's name and network
//	GET    /gunshu/managers/{name}                  a manager's network and services
//	GET    /gunshu/managers/{name}/services         the services of a manager
//	DELETE /gunshu/managers/{name}/services/{addr}  evict one service
//	GET    /gunshu/relays                           every relay handler
//
// It reads the managers and relays of the running config; errors are
// Caddy's JSON API errors with a status that says what went wrong.
type AdminAPI struct {
	log *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.gunshu",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision sets up the module.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.log = ctx.Logger(a)
	return nil
}

// Routes returns the admin routes under /gunshu/.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/gunshu/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/gunshu/"), "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "relays":
		if err := allowMethod(r, http.MethodGet); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, relayViews())
	case len(parts) == 1 && parts[0] == "managers":
		if err := allowMethod(r, http.MethodGet); err != nil {
			return err
		}
		return a.listManagers(r.Context(), w)
	case len(parts) == 2 && parts[0] == "managers":
		if err := allowMethod(r, http.MethodGet); err != nil {
			return err
		}
		return a.showManager(r.Context(), w, parts[1])
	case len(parts) == 3 && parts[0] == "managers" && parts[2] == "services":
		if err := allowMethod(r, http.MethodGet); err != nil {
			return err
		}
		return a.listServices(r.Context(), w, parts[1])
	case len(parts) == 4 && parts[0] == "managers" && parts[2] == "services":
		if err := allowMethod(r, http.MethodDelete); err != nil {
			return err
		}
		return a.evict(r.Context(), w, parts[1], parts[3])
	}
	return apiError(http.StatusNotFound, "no such gunshu endpoint: %s", r.URL.Path)
}

func (a *AdminAPI) listServices(ctx context.Context, w http.ResponseWriter, name string) error {
	services, err := servicesOf(ctx, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, services)
}

// managerSummary is one manager in GET /gunshu/managers.
type managerSummary struct {
	Name    string      `json:"name"`
	Network networkView `json:"network"`
}

func (a *AdminAPI) listManagers(ctx context.Context, w http.ResponseWriter) error {
	out := []managerSummary{}
	for _, lm := range liveManagerList() {
		m := lm.manager()
		if m == nil {
			continue // its config ended since the list was taken
		}
		services, err := serviceViews(ctx, m)
		if err != nil {
			return err
		}
		out = append(out, managerSummary{Name: lm.name, Network: newNetworkView(services)})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) showManager(ctx context.Context, w http.ResponseWriter, name string) error {
	services, err := servicesOf(ctx, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, managerView{Name: name, Network: newNetworkView(services), Services: services})
}

// servicesOf reads the services of the running manager of that name.
func servicesOf(ctx context.Context, name string) ([]serviceView, error) {
	m, err := runningManager(name)
	if err != nil {
		return nil, err
	}
	return serviceViews(ctx, m)
}

func (a *AdminAPI) evict(ctx context.Context, w http.ResponseWriter, name, addr string) error {
	m, err := runningManager(name)
	if err != nil {
		return err
	}
	if _, err := gunshu.ParseAddr(addr); err != nil {
		return apiError(http.StatusBadRequest, "bad service address %q: %v", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	removed, err := m.Registry.Remove(ctx, addr)
	if err != nil {
		return apiError(http.StatusBadGateway, "evicting %s: %v", addr, err)
	}
	if !removed {
		return apiError(http.StatusNotFound, "manager %q has no service %s", name, addr)
	}
	a.log.Info("service evicted", zap.String("manager", name), zap.String("service", addr), zap.String("by", "admin API"))
	return writeJSON(w, http.StatusOK, map[string]string{"evicted": addr})
}

// runningManager is the manager of that config name, or a 404.
func runningManager(name string) (*gunshu.Manager, error) {
	_, m, ok := lookupManager(name)
	if !ok {
		return nil, apiError(http.StatusNotFound, "no gunshu manager named %q", name)
	}
	return m, nil
}

func allowMethod(r *http.Request, method string) error {
	if r.Method != method {
		return apiError(http.StatusMethodNotAllowed, "method %s not allowed here; use %s", r.Method, method)
	}
	return nil
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)
