// Package caddyproc runs real Caddy processes for tests: the test binary
// itself, re-executed with Caddy's main, so it runs exactly the modules
// the test package links (Caddy's standard modules, caddy-l4, ours)
// without a build step. A test package calls MaybeRun first in TestMain.
package caddyproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// envChild marks a re-executed test binary that is to run Caddy.
const envChild = "GUNSHU_CADDYPROC_CHILD"

// MaybeRun runs Caddy's main with the process's arguments, and exits,
// when this process is a child started by Start; otherwise it returns.
func MaybeRun() {
	if os.Getenv(envChild) != "1" {
		return
	}
	os.Args = append([]string{"caddy"}, os.Args[1:]...)
	caddycmd.Main()
	os.Exit(0)
}

// Bounds of a child's life.
const (
	readyWithin = 30 * time.Second
	stopWithin  = 10 * time.Second
)

// Process is a running Caddy.
type Process struct {
	t   testing.TB
	cmd *exec.Cmd
	// Dir holds the Caddyfile, the log (Caddy's standard error) and the
	// data and config directories of the process.
	Dir string
	// LogFile is where Caddy's standard output and error go.
	LogFile string
	done    chan struct{}
	waitErr error
}

// Start runs `caddy run` on caddyfile, with HOME and the XDG directories
// in a directory of its own, and returns once every address in ready
// accepts TCP connections. The process is stopped when the test ends.
func Start(t testing.TB, caddyfile string, ready ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Process{t: t, Dir: dir, LogFile: filepath.Join(dir, "caddy.log"), done: make(chan struct{})}
	logFile, err := os.Create(p.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	p.cmd = exec.Command(os.Args[0], "run", "--config", config, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), envChild+"=1", "HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(readyWithin)
	for _, addr := range ready {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				t.Fatalf("caddy exited (%v) before %s answered; its log:\n%s", p.waitErr, addr, p.Log())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not answer %v after caddy started; its log:\n%s", addr, readyWithin, p.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop asks Caddy to stop (SIGINT: it shuts down gracefully), and kills it
// if it has not within stopWithin. It is idempotent.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(stopWithin):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("caddy (pid %d) did not stop within %v of SIGINT; killed", p.PID(), stopWithin)
	}
}

// Log is everything the process wrote so far.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.LogFile, err)
	}
	return string(b)
}

// LogEntries are the JSON lines of the log, decoded; other lines are
// skipped.
func (p *Process) LogEntries() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e map[string]any
		if json.Unmarshal(line, &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// Sockets counts the sockets the process holds open now (Linux: its
// descriptors that are sockets).
func (p *Process) Sockets() (int, error) {
	fds := fmt.Sprintf("/proc/%d/fd", p.PID())
	entries, err := os.ReadDir(fds)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fds, e.Name()))
		if errors.Is(err, syscall.ENOENT) {
			continue // closed while we looked
		}
		if err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n, nil
}
