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
	// MaxPerNetwork caps the services of one network, an IPv4 /24 or an
	// IPv6 /48 (the manager's max_per_network); 0 means no cap.
	MaxPerNetwork int
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

// MemoryRegistry keeps a manager's list in this process's memory. The list
// survives a config reload as long as a manager of the same name is in the
// new config. Its caps are the manager's max_services, max_per_ip and
// max_per_network.
type MemoryRegistry struct {
	key string
}

// CaddyModule returns the Caddy module information.
func (*MemoryRegistry) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gunshu.registries.memory",
		New: func() caddy.Module { return new(MemoryRegistry) },
	}
}

// Registry returns the pooled registry of the manager, created on first
// use, with the caps of the current config.
func (m *MemoryRegistry) Registry(p RegistryParams) (gunshu.Registry, error) {
	if m.key != "" {
		return nil, fmt.Errorf("memory registry already serves manager %q", m.key)
	}
	val, _, err := registries.LoadOrNew(p.Manager, func() (caddy.Destructor, error) {
		return pooled[*gunshu.MemoryRegistry]{gunshu.NewMemoryRegistry(p.MaxServices, p.MaxPerIP)}, nil
	})
	if err != nil {
		return nil, err
	}
	m.key = p.Manager
	reg := val.(pooled[*gunshu.MemoryRegistry]).value
	reg.SetLimits(p.MaxServices, p.MaxPerIP)
	reg.SetMaxPerNetwork(p.MaxPerNetwork)
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
)

// UnmarshalCaddyfile sets up the registry from Caddyfile tokens. Syntax:
//
//	registry memory
//
// It has no options: its caps are the manager's max_services,
// max_per_ip and max_per_network.
func (m *MemoryRegistry) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.Errf("memory registry takes no arguments, got %q", d.Val())
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("unknown memory registry option %q: its caps are the manager's max_services, max_per_ip and max_per_network", d.Val())
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*MemoryRegistry)(nil)
