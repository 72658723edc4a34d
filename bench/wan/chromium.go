package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// chromiumFlags keep headless Chromium from fetching anything of its own
// (through the proxy or around it) and send loopback through the proxy.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-features=NetworkTimeServiceQuerying", "--proxy-bypass-list=<-loopback>",
}

// findChromium returns the browser to use: path when given, else the
// first of the usual names on PATH.
func findChromium(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH (apt-get install chromium), or pass -chromium")
}

// PageTiming is what the page's script reports at its load event: times
// in milliseconds from the start of the navigation.
type PageTiming struct {
	Load      float64 `json:"load"`
	FirstByte float64 `json:"firstByte"`
	Images    int     `json:"images"`
}

var timingRE = regexp.MustCompile(`<pre id="` + timingID + `">([^<]*)</pre>`)

// loadPage loads url in a fresh headless Chromium (a new profile in
// profile) through the SOCKS5 proxy at socks, or with no proxy when socks
// is empty, and returns the page's own timing.
func loadPage(ctx context.Context, chromium, profile, socks, url string) (PageTiming, error) {
	var pt PageTiming
	if err := os.MkdirAll(profile, 0o755); err != nil {
		return pt, err
	}
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	args := append([]string(nil), chromiumFlags...)
	if socks != "" {
		args = append(args, "--proxy-server=socks5://"+socks)
	} else {
		args = append(args, "--no-proxy-server")
	}
	args = append(args, "--user-data-dir="+profile, "--dump-dom", url)
	cmd := exec.CommandContext(ctx, chromium, args...)
	// Chromium starts helper processes: they share its process group,
	// which a time-out ends as a whole (by the group's id, Chromium's PID).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return pt, fmt.Errorf("chromium: %w\n%s", err, lastLines(stderr.String(), 10))
	}
	m := timingRE.FindSubmatch(out)
	if m == nil || len(m[1]) == 0 {
		return pt, fmt.Errorf("the page reported no timing (not loaded?); DOM:\n%s", truncate(out, 400))
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &pt); err != nil {
		return pt, fmt.Errorf("page timing %q: %w", m[1], err)
	}
	if pt.Images != pageImages {
		return pt, fmt.Errorf("%d of %d images loaded", pt.Images, pageImages)
	}
	return pt, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
