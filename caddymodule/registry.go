package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

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
// new config, and a restart through a snapshot in Caddy's storage (see
// registrySnapshot). Its caps are the manager's max_services, max_per_ip
// and max_per_network.
type MemoryRegistry struct {
	key      string
	storage  gunshu.KeyValueStorage
	log      *zap.Logger
	restore  []string
	snapshot *registrySnapshot
}

// CaddyModule returns the Caddy module information.
func (*MemoryRegistry) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gunshu.registries.memory",
		New: func() caddy.Module { return new(MemoryRegistry) },
	}
}

// Provision takes the config's storage, which keeps the snapshot.
func (m *MemoryRegistry) Provision(ctx caddy.Context) error {
	m.log = ctx.Logger(m)
	if s := ctx.Storage(); s != nil {
		m.storage = s
	}
	return nil
}

// Registry returns the pooled registry of the manager, created on first
// use, with the caps of the current config. The first one of a process
// reads the snapshot the last one saved: what the manager should list
// again once it verified it (see savedServices).
func (m *MemoryRegistry) Registry(p RegistryParams) (gunshu.Registry, error) {
	if m.key != "" {
		return nil, fmt.Errorf("memory registry already serves manager %q", m.key)
	}
	val, loaded, err := registries.LoadOrNew(p.Manager, func() (caddy.Destructor, error) {
		return newRegistrySnapshot(gunshu.NewMemoryRegistry(p.MaxServices, p.MaxPerIP), m.storage, p.Manager, m.log), nil
	})
	if err != nil {
		return nil, err
	}
	m.key = p.Manager
	m.snapshot = val.(*registrySnapshot)
	if !loaded {
		m.restore = m.snapshot.saved()
	}
	reg := m.snapshot.registry
	reg.SetLimits(p.MaxServices, p.MaxPerIP)
	reg.SetMaxPerNetwork(p.MaxPerNetwork)
	return reg, nil
}

// savedServices are the services of the snapshot to list again, for the
// first config of a process (nil for later ones); restored tells the
// snapshot they were dealt with.
func (m *MemoryRegistry) savedServices() (addrs []string, restored func()) {
	if len(m.restore) == 0 {
		return nil, nil
	}
	return m.restore, m.snapshot.restored
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
	_ caddy.Provisioner  = (*MemoryRegistry)(nil)
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
