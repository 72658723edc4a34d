package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Helpers for the options of our Caddyfile blocks. Each reads the
// arguments of the option the dispenser is on and reports a bad or
// missing one with its file, line and token.

// optionParser reads the option opt the dispenser is on. It reports
// false for an option it does not know.
type optionParser func(opt string) (known bool, err error)

// parseOptions reads the block of the module what, one option at a time.
// Each option may be given once (seen holds those given already, as
// arguments, say; nil for none), except the repeatable ones.
func parseOptions(d *caddyfile.Dispenser, what string, seen map[string]bool, parse optionParser, repeatable ...string) error {
	if seen == nil {
		seen = map[string]bool{}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, opt, repeatable...); err != nil {
			return err
		}
		known, err := parse(opt)
		if !known {
			return d.Errf("unknown %s option %q", what, opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// flagArg reads an option without arguments that turns a flag on.
func flagArg(d *caddyfile.Dispenser, flag *bool) error {
	if err := noArgs(d); err != nil {
		return err
	}
	*flag = true
	return nil
}

// once fails when opt was seen before, unless it is one of repeatable.
func once(d *caddyfile.Dispenser, seen map[string]bool, opt string, repeatable ...string) error {
	for _, r := range repeatable {
		if r == opt {
			return nil
		}
	}
	if seen[opt] {
		return d.Errf("duplicate option %q", opt)
	}
	seen[opt] = true
	return nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs one argument", opt)
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one argument, got extra %q", opt, d.Val())
	}
	return val, nil
}

func appendArgs(d *caddyfile.Dispenser, list []string) ([]string, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("%s needs at least one argument", opt)
	}
	return append(list, args...), nil
}

func noArgs(d *caddyfile.Dispenser) error {
	opt := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no arguments, got %q", opt, d.Val())
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	s, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("%s: bad duration %q: %v", opt, s, err)
	}
	return caddy.Duration(dur), nil
}

// positiveDurationArg reads a duration above zero, or off (given as the
// word off, when off is not empty) for -1: never.
func positiveDurationArg(d *caddyfile.Dispenser, off string) (caddy.Duration, error) {
	opt := d.Val()
	s, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	if off != "" && s == off {
		return -1, nil
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: want a positive duration, got %q", opt, s)
	}
	return caddy.Duration(dur), nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	s, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: want a non-negative integer, got %q", opt, s)
	}
	return n, nil
}

func boolArg(d *caddyfile.Dispenser) (bool, error) {
	opt := d.Val()
	if !d.NextArg() {
		return true, nil
	}
	val := d.Val()
	if d.NextArg() {
		return false, d.Errf("%s takes at most one argument, got extra %q", opt, d.Val())
	}
	switch val {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("%s: want on or off, got %q", opt, val)
}

// portArgs reads a list of ports, or "none" for an empty one.
func portArgs(d *caddyfile.Dispenser) ([]uint16, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("%s needs at least one port, or none", opt)
	}
	if len(args) == 1 && args[0] == "none" {
		return []uint16{}, nil
	}
	ports := make([]uint16, 0, len(args))
	for _, a := range args {
		p, err := strconv.ParseUint(a, 10, 16)
		if err != nil || p == 0 {
			return nil, d.Errf("%s: want a port number from 1 to 65535 (or none alone), got %q", opt, a)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}
