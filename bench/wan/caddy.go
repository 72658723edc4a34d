package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tree is a checkout under test: its Caddy binary, built with
// `go build ./examples/caddy` from the checkout itself.
type Tree struct {
	Dir    string // the checkout
	Label  string // short name in tables: the directory's base name
	Commit string // git HEAD, "+dirty" when it has uncommitted changes
	Caddy  string // the built binary
}

// buildTree builds the tree's Caddy into work.
func buildTree(ctx context.Context, dir, work string, index int) (*Tree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "examples", "caddy")); err != nil {
		return nil, fmt.Errorf("tree %s has no examples/caddy: %w", abs, err)
	}
	t := &Tree{Dir: abs, Label: filepath.Base(abs), Caddy: filepath.Join(work, fmt.Sprintf("caddy-%d", index))}
	t.Commit = gitDescribe(ctx, abs)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", t.Caddy, "./examples/caddy")
	cmd.Dir = abs
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building Caddy in %s: %w\n%s", abs, err, out)
	}
	return t, nil
}

func gitDescribe(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(bytes.TrimSpace(status)) > 0 {
		commit += "+dirty"
	}
	return commit
}

// Process is one running Caddy.
type Process struct {
	Name string
	Log  string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// globalOptions every Caddy of the bench starts with: no admin endpoint
// (many processes, and other programs on the machine use :2019), no HTTPS,
// storage and autosave inside the run's directory.
const globalOptions = `	admin off
	auto_https off
	persist_config off
	storage file_system %s
`

// startCaddy writes the Caddyfile (global options, then body) and runs it.
// listen are the addresses the process must answer on before it counts as
// started.
func startCaddy(ctx context.Context, t *Tree, dir, name, global, sites string, listen ...string) (*Process, error) {
	pdir := filepath.Join(dir, name)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, err
	}
	conf := "{\n" + fmt.Sprintf(globalOptions, filepath.Join(pdir, "storage")) + global + "}\n\n" + sites
	file := filepath.Join(pdir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(pdir, "caddy.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	p := &Process{Name: name, Log: logFile.Name(), exited: make(chan struct{})}
	p.cmd = exec.Command(t.Caddy, "run", "--config", file, "--adapter", "caddyfile")
	p.cmd.Dir = pdir
	p.cmd.Env = append(os.Environ(), "HOME="+pdir, "XDG_DATA_HOME="+filepath.Join(pdir, "data"), "XDG_CONFIG_HOME="+filepath.Join(pdir, "config"))
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// The bench's children die with it, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	if err := p.waitListening(ctx, listen); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// waitListening waits until every address accepts a connection.
func (p *Process) waitListening(ctx context.Context, addrs []string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited (%v) before listening on %s; its log:\n%s", p.Name, p.err, a, tail(p.Log, 30))
			case <-ctx.Done():
				return fmt.Errorf("%s does not listen on %s: %w; its log:\n%s", p.Name, a, ctx.Err(), tail(p.Log, 30))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop ends the process by its PID: SIGTERM, then SIGKILL after 10 s.
func (p *Process) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Alive reports an error if the process has exited.
func (p *Process) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v; its log:\n%s", p.Name, p.err, tail(p.Log, 30))
	default:
		return nil
	}
}

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}

// freePorts returns n loopback addresses free at the time of the call,
// for Caddy servers that must be told their address before they start.
// They are drawn below the kernel's ephemeral range, where no outgoing
// connection (the links dial many) can take one before Caddy binds it, and
// held open together, so no two are the same.
func freePorts(n int) ([]string, error) {
	lo, hi := 10000, ephemeralLow()
	out := make([]string, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		addr := "127.0.0.1:0" // no room below the ephemeral range
		if hi-lo > 1000 && tries < 100*n {
			addr = "127.0.0.1:" + strconv.Itoa(lo+rand.IntN(hi-lo))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "127.0.0.1:0" {
				return nil, err
			}
			continue // taken: draw again
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	fields := strings.Fields(string(b))
	if err != nil || len(fields) == 0 {
		return linuxDefault
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return linuxDefault
	}
	return low
}

var errNotRegistered = errors.New("relays not all listed")
