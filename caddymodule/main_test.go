package caddymodule

import (
	"fmt"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/goleak"
)

// TestMain keeps the tests' Caddy storage out of the user's data
// directory (configs without a storage option use a fresh directory) and
// has no test restore a registry snapshot an earlier one saved (the test
// of snapshots turns it on). It fails the run when a goroutine a test
// started is still alive once every test has returned: sessions, accept
// loops, patrols and registration loops must all end with their config.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gunshu-caddymodule-storage-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddy.DefaultStorage = &certmagic.FileStorage{Path: dir}
	loadSnapshots = false
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(
			// A config's file log writer outlives caddy.Stop (Caddy keeps
			// its default logger), and with it timberjack's rotation
			// goroutine: Caddy's, not ours.
			goleak.IgnoreTopFunction("github.com/DeRuina/timberjack.(*Logger).millRun"),
			// certmagic refreshes a storage lock file every 5 s and notices
			// only then that it was unlocked.
			goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
