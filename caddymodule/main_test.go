package caddymodule

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine a test started is still alive
// once every test has returned: sessions, accept loops, patrols and
// registration loops must all end with their config.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A config's file log writer outlives caddy.Stop (Caddy keeps
		// its default logger), and with it timberjack's rotation
		// goroutine: Caddy's, not ours.
		goleak.IgnoreTopFunction("github.com/DeRuina/timberjack.(*Logger).millRun"),
		// certmagic refreshes a storage lock file every 5 s and notices
		// only then that it was unlocked.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
}
