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
	"net"
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Process is one running (or stopped) Caddy.
type Process struct {
	// Name tells the process apart in failure messages.
	Name string
	// Admin is the host:port of its admin endpoint.
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
		Admin:   net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb))),
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
// serves.
func (p *Process) Restart() {
	p.tb.Helper()
	from := p.LogLen()
	cmd := exec.Command(Binary(p.tb), "run", "--config", p.config, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"CADDY_ADMIN="+p.Admin,
		"HOME="+p.DataDir,
		"XDG_DATA_HOME="+filepath.Join(p.DataDir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(p.DataDir, "config"),
	)
	cmd.Env = append(cmd.Env, p.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.tb.Fatal(err)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		p.tb.Fatalf("starting caddy %s: %v", p.Name, err)
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
		p.tb.Fatalf("caddy %s did not start: %v\n%s", p.Name, err, p.tail(40))
	}
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
// contains every one of want, and returns its index.
func (p *Process) WaitLog(from int, want string, timeout time.Duration, more ...string) (int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if containsAll(p.lines[i], want, more) {
				p.mu.Unlock()
				return i, nil
			}
		}
		from = len(p.lines)
		grew := p.grew
		p.mu.Unlock()
		select {
		case <-grew:
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

// Load replaces the configuration through the admin endpoint, as
// `caddy reload` does.
func (p *Process) Load(caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+p.Admin+"/load", strings.NewReader(caddyfile))
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
	resp, err := adminClient.Get("http://" + p.Admin + path)
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
