package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(MemoryRegistry))
}

// RegistryParams is what a manager asks of its registry.
type RegistryParams struct {
	// Manager is the name of the manager in the gunshu app.
	Manager string
	// MaxServices caps the list (the manager's max_services).
	MaxServices int
	// MaxPerIP caps the services of one IP address (the manager's
	// max_per_ip); 0 means no cap.
	MaxPerIP int
}

// RegistryModule is implemented by gunshu.registries modules. A registry
// must outlive a config reload: a module keeps what it returns in a
// package caddy.UsagePool (or an external store) and releases its
// reference in Cleanup.
type RegistryModule interface {
	Registry(RegistryParams) (gunshu.Registry, error)
}

// registries holds the in-memory registries by manager name, across
// reloads.
var registries = caddy.NewUsagePool()

// pooledRegistry lets a gunshu.MemoryRegistry live in a UsagePool.
type pooledRegistry struct{ *gunshu.MemoryRegistry }

func (pooledRegistry) Destruct() error { return nil }

// MemoryRegistry keeps a manager's list in this process's memory. The list
// survives a config reload as long as a manager of the same name is in the
// new config.
type MemoryRegistry struct {
	// MaxPerHost caps the services that share one host; 0 means no cap.
	MaxPerHost int `json:"max_per_host,omitempty"`

	key string
}

// CaddyModule returns the Caddy module information.
func (*MemoryRegistry) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gunshu.registries.memory",
		New: func() caddy.Module { return new(MemoryRegistry) },
	}
}

// Validate checks the caps.
func (m *MemoryRegistry) Validate() error {
	if m.MaxPerHost < 0 {
		return fmt.Errorf("max_per_host must not be negative, got %d", m.MaxPerHost)
	}
	return nil
}

// Registry returns the pooled registry of the manager, created on first
// use, with the caps of the current config.
func (m *MemoryRegistry) Registry(p RegistryParams) (gunshu.Registry, error) {
	if m.key != "" {
		return nil, fmt.Errorf("memory registry already serves manager %q", m.key)
	}
	val, _, err := registries.LoadOrNew(p.Manager, func() (caddy.Destructor, error) {
		return pooledRegistry{gunshu.NewMemoryRegistry(p.MaxServices, m.MaxPerHost)}, nil
	})
	if err != nil {
		return nil, err
	}
	m.key = p.Manager
	reg := val.(pooledRegistry).MemoryRegistry
	reg.SetLimits(p.MaxServices, m.MaxPerHost)
	return reg, nil
}

// Cleanup releases this config's reference to the registry.
func (m *MemoryRegistry) Cleanup() error {
	if m.key == "" {
		return nil
	}
	_, err := registries.Delete(m.key)
	return err
}

// Interface guards
var (
	_ RegistryModule     = (*MemoryRegistry)(nil)
	_ caddy.CleanerUpper = (*MemoryRegistry)(nil)
	_ caddy.Validator    = (*MemoryRegistry)(nil)
)

// UnmarshalCaddyfile sets up the registry from Caddyfile tokens. Syntax:
//
//	registry memory {
//		max_per_host <n>
//	}
func (m *MemoryRegistry) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.Errf("memory registry takes no arguments, got %q", d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, opt); err != nil {
			return err
		}
		if opt != "max_per_host" {
			return d.Errf("unknown memory registry option %q", opt)
		}
		n, err := intArg(d)
		if err != nil {
			return err
		}
		m.MaxPerHost = n
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*MemoryRegistry)(nil)
