package caddymodule

import (
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(new(MatchGunshu))
}

// MatchGunshu matches connections whose first line is a Gunshu command. It
// gives up at the first byte no accepted command can start with, so other
// protocols on the same port are never delayed.
type MatchGunshu struct {
	// Commands restricts the match to these commands (reg, test, list,
	// est). Default: all of them.
	Commands []string `json:"commands,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (*MatchGunshu) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.matchers.gunshu",
		New: func() caddy.Module { return new(MatchGunshu) },
	}
}

// Validate checks that every command can open a connection.
func (m *MatchGunshu) Validate() error {
	for _, c := range m.Commands {
		if !slices.Contains(gunshu.FirstCommands, c) {
			return fmt.Errorf("commands: %q is not a command a connection opens with (want one of %v)", c, gunshu.FirstCommands)
		}
	}
	return nil
}

// Match reports whether the connection opens with an accepted command.
func (m *MatchGunshu) Match(cx *layer4.Connection) (bool, error) {
	switch _, verdict := gunshu.SniffCommand(cx.MatchingBytes(), m.Commands); verdict {
	case gunshu.SniffYes:
		return true, nil
	case gunshu.SniffMore:
		return false, layer4.ErrConsumedAllPrefetchedBytes
	}
	return false, nil
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	gunshu [<command>...]
func (m *MatchGunshu) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // matcher name
	for d.NextArg() {
		c := d.Val()
		if !slices.Contains(gunshu.FirstCommands, c) {
			return d.Errf("gunshu matcher: unknown command %q (want one of %v)", c, gunshu.FirstCommands)
		}
		m.Commands = append(m.Commands, c)
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("gunshu matcher takes no block, got %q", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ layer4.ConnMatcher    = (*MatchGunshu)(nil)
	_ caddy.Validator       = (*MatchGunshu)(nil)
	_ caddyfile.Unmarshaler = (*MatchGunshu)(nil)
)
