// Package caddyproc runs real Caddy processes for tests and benchmarks:
// the program of examples/caddy (Caddy with the standard modules, caddy-l4
// and ours), built once per test binary, each process with its own admin
// endpoint and storage, stopped by PID when the test ends.
package caddyproc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of a Caddy built from examples/caddy, building
// it on first use; the binary lives until the test binary exits.
func Binary(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "gunshu-caddy-")
		if err != nil {
			build.err = err
			return
		}
		path := filepath.Join(dir, "caddy")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./examples/caddy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./examples/caddy: %v\n%s", err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.path
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Process is one running (or stopped) Caddy.
type Process struct {
	// Name tells the process apart in failure messages.
	Name string
	// Admin is the host:port of its admin endpoint. A restart that finds
	// it taken moves it: read it while the process serves.
	Admin string
	// DataDir holds its storage (guards, registry snapshots); it is
	// kept across Restart.
	DataDir string

	tb      testing.TB
	config  string
	env     []string
	logPath string

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	lines []string
	grew  chan struct{} // closed and replaced when a line arrives
}

// Config says what to run.
type Config struct {
	// Name tells the process apart in failure messages.
	Name string
	// Caddyfile is the configuration.
	Caddyfile string
	// Env adds environment variables.
	Env []string
	// DataDir is Caddy's storage; empty means a fresh directory.
	DataDir string
}

// Start runs Caddy with c and waits until it serves its configuration.
// It is stopped (SIGTERM, then SIGKILL) when the test ends.
func Start(tb testing.TB, c Config) *Process {
	tb.Helper()
	dir := tb.TempDir()
	p := &Process{
		Name:    c.Name,
		Admin:   testkit.FreeAddr(tb),
		DataDir: c.DataDir,
		tb:      tb,
		config:  filepath.Join(dir, "Caddyfile"),
		env:     c.Env,
		logPath: filepath.Join(dir, "caddy.log"),
		grew:    make(chan struct{}),
	}
	if p.DataDir == "" {
		p.DataDir = filepath.Join(dir, "data")
	}
	if err := os.WriteFile(p.config, []byte(c.Caddyfile), 0o600); err != nil {
		tb.Fatal(err)
	}
	Binary(tb)
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("log of caddy %s (last 40 lines):\n%s", p.Name, p.tail(40))
		}
	})
	p.Restart()
	return p
}

// Restart starts the process again (it must be stopped) with the same
// configuration file, admin endpoint and storage, and waits until it
// serves. It fails the test if it does not.
func (p *Process) Restart() {
	p.tb.Helper()
	if err := p.TryRestart(); err != nil {
		p.tb.Fatal(err)
	}
}

// TryRestart is Restart returning its error, for goroutines other than
// the test's.
func (p *Process) TryRestart() error {
	// The admin port was free when it was picked; if something took it
	// since, pick another.
	for range 3 {
		from := p.LogLen()
		err := p.start(from)
		if err == nil || !p.logged(from, "administration endpoint", "address already in use") {
			return err
		}
		admin := testkit.FreeAddr(p.tb)
		p.mu.Lock()
		p.Admin = admin
		p.mu.Unlock()
	}
	return fmt.Errorf("caddy %s: no free admin port in 3 tries", p.Name)
}

// logged reports whether a log line from index from on holds all of want.
func (p *Process) logged(from int, want ...string) bool {
	for _, line := range p.Lines(from) {
		if containsAll(line, want[0], want[1:]) {
			return true
		}
	}
	return false
}

func (p *Process) start(from int) error {
	cmd := exec.Command(build.path, "run", "--config", p.config, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"CADDY_ADMIN="+p.adminAddr(),
		"HOME="+p.DataDir,
		"XDG_DATA_HOME="+filepath.Join(p.DataDir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(p.DataDir, "config"),
	)
	cmd.Env = append(cmd.Env, p.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting caddy %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		defer close(done)
		defer logFile.Close()
		p.readLog(io.TeeReader(stderr, logFile))
		_ = cmd.Wait()
	}()
	if _, err := p.WaitLog(from, "serving initial configuration", 60*time.Second); err != nil {
		p.Stop()
		return fmt.Errorf("caddy %s did not start: %w\n%s", p.Name, err, p.tail(40))
	}
	return nil
}

func (p *Process) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.grew)
		p.grew = make(chan struct{})
		p.mu.Unlock()
	}
}

// PID is the process id of the running process, 0 if none.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the running process.
func (p *Process) Signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Stop ends the process: SIGTERM (after SIGCONT, in case it was
// stopped), then SIGKILL after 10 s.
func (p *Process) Stop() { p.end(syscall.SIGTERM, 10*time.Second) }

// Kill ends the process with SIGKILL, as a crash would.
func (p *Process) Kill() { p.end(syscall.SIGKILL, 0) }

func (p *Process) end(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	<-done
}

// LogLen is the number of log lines so far: pass it to WaitLog to wait
// for a line logged from now on.
func (p *Process) LogLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// WaitLog waits up to timeout for a log line at index from or later that
// contains every one of want, and returns its index. It gives up early
// when the process exits.
func (p *Process) WaitLog(from int, want string, timeout time.Duration, more ...string) (int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	exited := false
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if containsAll(p.lines[i], want, more) {
				p.mu.Unlock()
				return i, nil
			}
		}
		from = len(p.lines)
		grew, done := p.grew, p.done
		p.mu.Unlock()
		if exited {
			return 0, fmt.Errorf("caddy %s exited with no log line with %q", p.Name, append([]string{want}, more...))
		}
		select {
		case <-grew:
		case <-done: // its last lines are read: look once more
			exited = true
		case <-deadline.C:
			return 0, fmt.Errorf("no log line with %q within %v", append([]string{want}, more...), timeout)
		}
	}
}

func containsAll(line, want string, more []string) bool {
	if !strings.Contains(line, want) {
		return false
	}
	for _, m := range more {
		if !strings.Contains(line, m) {
			return false
		}
	}
	return true
}

// Lines returns the log lines from index from on.
func (p *Process) Lines(from int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from >= len(p.lines) {
		return nil
	}
	return append([]string(nil), p.lines[from:]...)
}

func (p *Process) tail(n int) string {
	lines := p.Lines(max(p.LogLen()-n, 0))
	return strings.Join(lines, "\n")
}

func (p *Process) adminAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Admin
}

// Load replaces the configuration through the admin endpoint, as
// `caddy reload` does.
func (p *Process) Load(caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+p.adminAddr()+"/load", strings.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate") // reload even if unchanged
	resp, err := adminClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("load: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// Get fetches path from the admin endpoint (for example /metrics).
func (p *Process) Get(path string) (string, error) {
	resp, err := adminClient.Get("http://" + p.adminAddr() + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

var adminClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// MetricSum adds up every sample of the metric name on the process's
// /metrics (all its label sets).
func (p *Process) MetricSum(name string) (float64, error) {
	text, err := p.Get("/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
	}
	return sum, nil
}
