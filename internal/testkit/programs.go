package testkit

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// The programs people use, for end-to-end tests: scripts/test installs
// them, so a missing one fails the test rather than skipping it.

// Program returns the path of the first of names installed, and fails the
// test when none is.
func Program(t testing.TB, names ...string) string {
	t.Helper()
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatalf("%s is needed (Debian package %s; scripts/test installs it)", names[0], names[0])
	return ""
}

// Curl runs curl -sS with a 20 s bound and args, and returns what it
// printed, errors included.
func Curl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Program(t, "curl"), slices.Concat([]string{"-sS", "--max-time", "20"}, args)...).CombinedOutput()
	return string(out), err
}

// Chromium runs headless Chromium with a fresh profile and args, and
// returns its standard output. Its flags keep it from fetching anything
// of its own and from going around a proxy for loopback addresses.
func Chromium(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	flags := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--proxy-bypass-list=<-loopback>", "--disable-background-networking",
		"--disable-component-update", "--disable-features=NetworkTimeServiceQuerying",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, Program(t, "chromium", "chromium-browser", "google-chrome"), slices.Concat(flags, args)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}
