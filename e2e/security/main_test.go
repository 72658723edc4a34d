// Package security tests the defaults of issue #16 against real Caddy
// processes built from this tree's modules, on loopback: each attack of
// the issue, run as an attacker would, with the figure it achieves
// bounded. bench/security measures the same attacks before and after.
package security

import (
	"os"
	"testing"

	// The Caddy the child processes run: Caddy's standard modules,
	// caddy-l4, and the Gunshu modules, as examples/caddy builds it.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4"

	_ "github.com/gunshu/caddy-gunshu"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
)

func TestMain(m *testing.M) {
	caddyproc.MaybeRun()
	os.Exit(m.Run())
}
