package caddymodule

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gunshu", parseGlobalOption)
}

// parseGlobalOption sets up the gunshu app from the global option block.
// Several gunshu blocks are merged; a manager may be defined once. Syntax:
//
//	gunshu {
//		manager [<name>] {
//			patrol_interval <duration>
//			test_timeout <duration>
//			max_failures <n>
//			verify [on|off]
//			max_services <n>
//			max_per_ip <n>
//			max_per_network <n>
//			require_source_match [on|off]
//			register_rate <every> [<burst>] | off
//			max_sessions <n>
//			max_sessions_per_ip <n>
//			allow <cidr|host>...
//			deny <cidr|host>...
//			registry <module> {
//				...
//			}
//		}
//	}
//
// The manager's name defaults to "default". register_rate allows <burst>
// (default 1) registrations of one source address at once, then one per
// <every> (default 10s 6; off lifts it); max_per_ip 0 lifts the default
// cap of 2, max_per_network 0 that of 8; require_source_match is on unless
// turned off.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("existing gunshu option of unexpected type %T", existing)
		}
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, d.Errf("merging gunshu options: %v", err)
		}
	}
	if app.Managers == nil {
		app.Managers = make(map[string]*ManagerConfig)
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.Errf("gunshu takes no arguments, got %q: managers go in a block", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "manager" {
			return nil, d.Errf("unknown gunshu option %q (want manager)", d.Val())
		}
		name := DefaultManager
		if d.NextArg() {
			name = d.Val()
		}
		if d.NextArg() {
			return nil, d.Errf("manager takes at most one argument (its name), got extra %q", d.Val())
		}
		if _, dup := app.Managers[name]; dup {
			return nil, d.Errf("manager %q defined twice", name)
		}
		cfg, err := parseManager(d)
		if err != nil {
			return nil, err
		}
		app.Managers[name] = cfg
	}
	return httpcaddyfile.App{Name: "gunshu", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseManager(d *caddyfile.Dispenser) (*ManagerConfig, error) {
	cfg := new(ManagerConfig)
	err := parseOptions(d, "manager", nil, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "patrol_interval":
			cfg.PatrolInterval, err = durationArg(d)
		case "test_timeout":
			cfg.TestTimeout, err = durationArg(d)
		case "max_failures":
			cfg.MaxFailures, err = intArg(d)
		case "verify":
			var v bool
			v, err = boolArg(d)
			cfg.Verify = &v
		case "max_services":
			cfg.MaxServices, err = intArg(d)
		case "max_per_ip":
			var n int
			n, err = intArg(d)
			cfg.MaxPerIP = &n
		case "max_per_network":
			var n int
			n, err = intArg(d)
			cfg.MaxPerNetwork = &n
		case "require_source_match":
			var v bool
			v, err = boolArg(d)
			cfg.RequireSourceMatch = &v
		case "register_rate":
			cfg.RegisterRate, err = rateArgs(d)
		case "allow":
			cfg.Allow, err = appendArgs(d, cfg.Allow)
		case "deny":
			cfg.Deny, err = appendArgs(d, cfg.Deny)
		case "registry":
			cfg.RegistryRaw, err = parseRegistry(d)
		default:
			return cfg.SessionLimits.unmarshalOption(d, opt)
		}
		return true, err
	}, "allow", "deny")
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseRegistry reads "registry <module> [{...}]" into the module's JSON.
func parseRegistry(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("registry needs the registry module's name (for example memory)")
	}
	name := d.Val()
	mod, err := caddyfile.UnmarshalModule(d, "gunshu.registries."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(mod, "module", name, nil), nil
}

// rateArgs reads "<every> [<burst>]" or "off".
func rateArgs(d *caddyfile.Dispenser) (*RateConfig, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		return &RateConfig{Off: true}, nil
	}
	if len(args) == 0 || len(args) > 2 {
		return nil, d.Errf("%s wants <every> [<burst>] or off, got %d arguments", opt, len(args))
	}
	every, err := caddy.ParseDuration(args[0])
	if err != nil || every <= 0 {
		return nil, d.Errf("%s: want a positive duration, got %q", opt, args[0])
	}
	r := &RateConfig{Every: caddy.Duration(every)}
	if len(args) == 2 {
		if r.Burst, err = strconv.Atoi(args[1]); err != nil || r.Burst < 1 {
			return nil, d.Errf("%s: burst: want a positive integer, got %q", opt, args[1])
		}
	}
	return r, nil
}
