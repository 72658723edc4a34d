// Package caddymodule makes Gunshu a Caddy plugin: the gunshu app owns the
// long-lived state (managers' registries and patrol loops, relays'
// registration loops), and layer4 handlers and a matcher serve the
// protocol's roles. The protocol itself lives in package gunshu; these
// modules only adapt it to Caddy's configuration and lifecycle.
package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(App))
}

// DefaultManager is the name of the manager used when none is named, and
// the one manager an app without configuration has.
const DefaultManager = "default"

// DefaultMaxServices caps a manager's list when max_services is unset:
// ten times the network bench/scale measures, so that a network of 10,000
// relays with its churn (dead relays listed until patrol removes them) is
// not refused. The caps per address and per network keep one holder from
// filling it; 100,000 relays cost Redis about 80 MB.
const DefaultMaxServices = 100000

// App is the gunshu app. It owns the Gunshu state that outlives a single
// connection: the named managers (their registries survive a config
// reload; their patrol loops run between Start and Stop) and the
// registration loops of the relays configured in layer4 routes.
type App struct {
	// Managers by name. Without any, the app has one manager named
	// "default" with the default settings.
	Managers map[string]*ManagerConfig `json:"managers,omitempty"`

	ctx      caddy.Context
	log      *zap.Logger
	mu       sync.Mutex
	managers map[string]*gunshu.Manager
	relays   []*RelayHandler
	// entrances are the initiators of this config, told their cover at
	// Start (or at their first connection, whichever comes first).
	entrances   []*InitiatorHandler
	limiterKeys []string
	// restores are the saved services each manager lists again at Start.
	restores []savedList
	cancel   context.CancelFunc
	loops    sync.WaitGroup
}

// savedList is a manager's snapshot to restore (see registrySnapshot).
type savedList struct {
	manager  string
	addrs    []string
	restored func()
}

// ManagerConfig configures one manager of the app.
type ManagerConfig struct {
	// PatrolInterval is the time between two tests of every listed
	// service. Default: 30s.
	PatrolInterval caddy.Duration `json:"patrol_interval,omitempty"`
	// TestTimeout bounds one test exchange. Default: 5s.
	TestTimeout caddy.Duration `json:"test_timeout,omitempty"`
	// MaxFailures is how many consecutive failed tests remove a service.
	// Default: 1.
	MaxFailures int `json:"max_failures,omitempty"`
	// Verify tests a registering address before listing it. Default: true.
	Verify *bool `json:"verify,omitempty"`
	// MaxServices caps the list. Default: 100000.
	MaxServices int `json:"max_services,omitempty"`
	// MaxPerIP caps the services listed for one IP address (an IPv6 /64):
	// the address each service answered its verification from, so many
	// names or ports of one machine count as one machine. The registry
	// enforces it. Default: 2 (as Tor allows per address); 0: no cap.
	MaxPerIP *int `json:"max_per_ip,omitempty"`
	// MaxPerNetwork caps the services listed for one network, an IPv4 /24
	// or an IPv6 /48 (of the address each answered its verification
	// from), so that whoever holds a network cannot fill the list.
	// Default: 8; 0: no cap.
	MaxPerNetwork *int `json:"max_per_network,omitempty"`
	// RequireSourceMatch lists an address only when its host is (or
	// resolves to) the IP address that sent reg, and then verifies only
	// that address: nobody can register, or make the manager connect to,
	// a machine other than their own. Default: true. Turn it off only
	// for a manager that registers relays on behalf of others.
	RequireSourceMatch *bool `json:"require_source_match,omitempty"`
	// RegisterRate limits the reg exchanges of one source address (an
	// IPv4 address, an IPv6 /64). Default: a burst of 6, then one every
	// 10s; {"off": true} lifts it.
	RegisterRate *RateConfig `json:"register_rate,omitempty"`
	// The manager's session limits count reg and list exchanges in
	// flight; they are kept across reloads by manager name.
	SessionLimits
	// Allow lists CIDRs and host names that may register although a
	// default-denied range (loopback, private, link-local, CGNAT,
	// multicast, unspecified) holds them.
	Allow []string `json:"allow,omitempty"`
	// Deny lists CIDRs and host names that may never register.
	Deny []string `json:"deny,omitempty"`
	// Registry stores the list: a gunshu.registries module. Default:
	// memory, which keeps the list in this process across reloads.
	RegistryRaw json.RawMessage `json:"registry,omitempty" caddy:"namespace=gunshu.registries inline_key=module"`
}

// RateConfig is a token bucket: Burst events at once, then one per Every.
type RateConfig struct {
	// Every is the time one more event is allowed after. Required
	// unless Off.
	Every caddy.Duration `json:"every,omitempty"`
	// Burst is how many events may come at once. Default: 1.
	Burst int `json:"burst,omitempty"`
	// Off lifts the limit.
	Off bool `json:"off,omitempty"`
}

// rate is the configured rate: nil means def, Off the zero Rate (no
// limit).
func (r *RateConfig) rate(def gunshu.Rate) gunshu.Rate {
	switch {
	case r == nil:
		return def
	case r.Off:
		return gunshu.Rate{}
	}
	return gunshu.Rate{Every: time.Duration(r.Every), Burst: r.Burst}
}

func (r *RateConfig) validate() error {
	switch {
	case r == nil:
		return nil
	case r.Off:
		if r.Every != 0 || r.Burst != 0 {
			return fmt.Errorf("register_rate: off takes no every or burst")
		}
		return nil
	case r.Every <= 0:
		return fmt.Errorf("register_rate: every must be positive, got %s", time.Duration(r.Every))
	}
	return notNegative(countOption("register_rate: burst", r.Burst))
}

// orDefault is *n, or def when n is nil.
func orDefault[T any](n *T, def T) T {
	if n == nil {
		return def
	}
	return *n
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gunshu",
		New: func() caddy.Module { return new(App) },
	}
}

// gunshuApp is the gunshu app of ctx's config, loaded (and provisioned)
// if no module loaded it before.
func gunshuApp(ctx caddy.Context) (*App, error) {
	app, err := ctx.App("gunshu")
	if err != nil {
		return nil, fmt.Errorf("loading gunshu app: %w", err)
	}
	return app.(*App), nil
}

// Provision builds the managers; a manager's registry is taken from the
// registry module, which shares it with the previous config on reload.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.log = ctx.Logger(a)
	if len(a.Managers) == 0 {
		a.Managers = map[string]*ManagerConfig{DefaultManager: {}}
	}
	a.managers = make(map[string]*gunshu.Manager, len(a.Managers))
	for _, name := range a.managerNames() {
		cfg := a.Managers[name]
		if cfg == nil {
			cfg = new(ManagerConfig)
			a.Managers[name] = cfg
		}
		m, err := a.provisionManager(ctx, name, cfg)
		if err != nil {
			return fmt.Errorf("manager %q: %w", name, err)
		}
		a.managers[name] = m
	}
	return a.instrument(ctx)
}

func (a *App) provisionManager(ctx caddy.Context, name string, cfg *ManagerConfig) (*gunshu.Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.RegistryRaw == nil {
		cfg.RegistryRaw = json.RawMessage(`{"module":"memory"}`)
	}
	mod, err := ctx.LoadModule(cfg, "RegistryRaw")
	if err != nil {
		return nil, fmt.Errorf("loading registry module: %w", err)
	}
	maxServices := cfg.MaxServices
	if maxServices == 0 {
		maxServices = DefaultMaxServices
	}
	reg, err := mod.(RegistryModule).Registry(RegistryParams{
		Manager:       name,
		MaxServices:   maxServices,
		MaxPerIP:      orDefault(cfg.MaxPerIP, gunshu.DefaultMaxPerIP),
		MaxPerNetwork: orDefault(cfg.MaxPerNetwork, gunshu.DefaultMaxPerNetwork),
	})
	if err != nil {
		return nil, fmt.Errorf("opening registry: %w", err)
	}
	if saver, ok := mod.(interface{ savedServices() ([]string, func()) }); ok {
		if addrs, restored := saver.savedServices(); len(addrs) > 0 {
			a.restores = append(a.restores, savedList{manager: name, addrs: addrs, restored: restored})
		}
	}
	limiter, key, err := sharedLimiter("manager "+name, cfg.SessionLimits)
	if err != nil {
		return nil, err
	}
	if key != "" {
		a.limiterKeys = append(a.limiterKeys, key)
	}
	return &gunshu.Manager{
		Registry:           reg,
		Policy:             gunshu.Policy{Allow: cfg.Allow, Deny: cfg.Deny},
		RequireSourceMatch: orDefault(cfg.RequireSourceMatch, true),
		RegisterRate:       cfg.RegisterRate.rate(gunshu.DefaultRegisterRate),
		SessionLimiter:     limiter,
		DisableVerify:      cfg.Verify != nil && !*cfg.Verify,
		TestTimeout:        time.Duration(cfg.TestTimeout),
		PatrolInterval:     time.Duration(cfg.PatrolInterval),
		MaxFailures:        cfg.MaxFailures,
		Logger:             a.log.With(zap.String("manager", name)),
	}, nil
}

func (cfg *ManagerConfig) validate() error {
	err := notNegative(
		durationOption("patrol_interval", cfg.PatrolInterval),
		durationOption("test_timeout", cfg.TestTimeout),
		countOption("max_failures", cfg.MaxFailures),
		countOption("max_services", cfg.MaxServices),
		countOption("max_per_ip", orDefault(cfg.MaxPerIP, gunshu.DefaultMaxPerIP)),
		countOption("max_per_network", orDefault(cfg.MaxPerNetwork, gunshu.DefaultMaxPerNetwork)),
	)
	if err != nil {
		return err
	}
	if err := cfg.RegisterRate.validate(); err != nil {
		return err
	}
	if err := cfg.SessionLimits.validate(); err != nil {
		return err
	}
	return compilePolicy(cfg.Allow, cfg.Deny)
}

// compilePolicy reports the first bad allow or deny entry.
func compilePolicy(allow, deny []string) error {
	p := gunshu.Policy{Allow: allow, Deny: deny}
	return p.Compile()
}

func (a *App) managerNames() []string {
	names := make([]string, 0, len(a.Managers))
	for n := range a.Managers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Manager returns the manager called name ("default" when empty).
func (a *App) Manager(name string) (*gunshu.Manager, error) {
	if name == "" {
		name = DefaultManager
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if m, ok := a.managers[name]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("no manager named %q in the gunshu app (configured: %s)", name, strings.Join(a.managerNames(), ", "))
}

// ManagerNames lists the configured managers, sorted.
func (a *App) ManagerNames() []string { return a.managerNames() }

// Relays returns the relays of this config, in provisioning order.
func (a *App) Relays() []*RelayHandler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.relays)
}

// addRelay makes r's registration loop part of the app's lifetime.
func (a *App) addRelay(r *RelayHandler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.relays = append(a.relays, r)
}

// addEntrance lets the app give h its cover once every relay of the
// config is known.
func (a *App) addEntrance(h *InitiatorHandler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entrances = append(a.entrances, h)
}

// coverFor is the advertised address of the first relay of this config
// that registers with manager, or "" when none does: an entrance using
// manager takes it as cover.
func (a *App) coverFor(manager string) string {
	for _, r := range a.Relays() {
		if r.registrar != nil && slices.Contains(r.registrar.Managers, manager) {
			return r.advertise
		}
	}
	return ""
}

// Start begins the patrol loop of every manager and the registration loop
// of every relay that names managers, and gives every entrance its cover
// (warning about those without). It warns about layer4 servers that
// listen on plain TCP (see keepAcceptingNetworks).
func (a *App) Start() error {
	a.mu.Lock()
	entrances := slices.Clone(a.entrances)
	a.mu.Unlock()
	for _, h := range entrances {
		h.prepare()
	}
	for _, addr := range plainTCPListeners(a.ctx) {
		a.log.Warn("a layer4 server on plain TCP stops accepting for good once the process runs out of file descriptors; listen on gunshu/<address> to pause and resume instead",
			zap.String("listen", addr))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancel = cancel
	for _, name := range a.managerNames() {
		m := a.managers[name]
		a.loops.Go(func() { m.Patrol(ctx) })
	}
	for _, r := range a.relays {
		if r.registrar != nil {
			a.loops.Go(func() { r.keepRegistered(ctx) })
		}
	}
	for _, saved := range a.restores {
		m := a.managers[saved.manager]
		a.loops.Go(func() { a.restore(ctx, m, saved) })
	}
	a.restores = nil
	return nil
}

// restore lists again the services of a manager's snapshot that still
// pass what a fresh reg passes.
func (a *App) restore(ctx context.Context, m *gunshu.Manager, saved savedList) {
	start := time.Now()
	n := m.Restore(ctx, saved.addrs)
	if ctx.Err() != nil {
		return // stopped first: the snapshot keeps them for the next start
	}
	saved.restored()
	a.log.Info("services of the last snapshot listed again", zap.String("manager", saved.manager),
		zap.Int("listed", n), zap.Int("saved", len(saved.addrs)), zap.Duration("took", time.Since(start)))
}

// Stop ends the loops and waits for them. Sessions in progress are not
// touched: a reload must not cut the routes running through this server.
func (a *App) Stop() error {
	a.mu.Lock()
	cancel := a.cancel
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	a.loops.Wait()
	return nil
}

// instrument connects the app's managers to the metrics, the logs and the
// operator tools, and makes its relays visible to the admin API. App calls
// it at the end of Provision; Cleanup undoes it.
func (a *App) instrument(ctx caddy.Context) error {
	la := &liveApp{app: a}
	liveApps.Lock()
	defer liveApps.Unlock()
	liveApps.list = append(liveApps.list, la)
	for _, name := range a.ManagerNames() {
		m, err := a.Manager(name)
		if err != nil {
			return err
		}
		untrack, err := instrumentManager(ctx, name, m, a.log)
		if err != nil {
			return err
		}
		la.untrack = append(la.untrack, untrack)
	}
	return nil
}

// Cleanup releases what instrument took: the app's managers and relays
// leave the admin API, unless a newer config still has them.
func (a *App) Cleanup() error {
	for _, key := range a.limiterKeys {
		_ = releaseLimiter(key)
	}
	liveApps.Lock()
	defer liveApps.Unlock()
	for i, la := range liveApps.list {
		if la.app == a {
			for _, untrack := range la.untrack {
				untrack()
			}
			liveApps.list = append(liveApps.list[:i], liveApps.list[i+1:]...)
			break
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
