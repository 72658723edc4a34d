package caddymodule

import (
	"fmt"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// TestMain keeps the tests' Caddy storage out of the user's data
// directory: configs without a storage option use a fresh directory, and
// no test restores a registry snapshot an earlier one saved (except the
// test of snapshots, which turns it on).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gunshu-caddymodule-storage-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddy.DefaultStorage = &certmagic.FileStorage{Path: dir}
	loadSnapshots = false
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
