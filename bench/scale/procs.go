package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the bench started and stops by its PID.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProc runs name with args, output to logFile; it dies with the bench.
func startProc(name, logFile string, env []string, bin string, args ...string) (*proc, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p := &proc{name: name, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Dir = filepath.Dir(logFile)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// freePort returns a loopback port nobody listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts a connection or the process ends.
func waitListening(ctx context.Context, p *proc, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before listening on %s", p.name, addr)
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s: %w", p.name, addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func startRedis(ctx context.Context, dir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startServing(ctx, addr, "redis", filepath.Join(dir, "redis.log"), nil, "redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--maxclients", "2000")
	return p, addr, err
}

// startServing is startProc for a server: it returns once addr accepts
// connections.
func startServing(ctx context.Context, addr, name, logFile string, env []string, bin string, args ...string) (*proc, error) {
	p, err := startProc(name, logFile, env, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, addr); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// managerConfig is a manager's Caddyfile: defaults everywhere but the
// loopback allowance, the list cap and the Redis registry.
const managerConfig = `{
	admin off
	auto_https off
	persist_config off
	storage file_system %[1]s/storage
	log {
		output file %[1]s/caddy.log
		level WARN
	}
	gunshu {
		manager {
			patrol_interval %[2]s
			allow 127.0.0.0/8
			max_services %[3]d
			registry redis %[4]s
		}
	}
	layer4 {
		gunshu/%[5]s {
			@gunshu gunshu reg list
			route @gunshu {
				gunshu_manager
			}
		}
	}
}
`

func startManager(ctx context.Context, caddy, dir string, i int, cfg Config, redisAddr string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	mdir := filepath.Join(dir, fmt.Sprintf("manager%d", i))
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return nil, "", err
	}
	conf := fmt.Sprintf(managerConfig, mdir, cfg.PatrolInterval, cfg.MaxServices, redisAddr, addr)
	file := filepath.Join(mdir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	p, err := startServing(ctx, addr, fmt.Sprintf("manager%d", i), filepath.Join(mdir, "stdout.log"),
		[]string{"HOME=" + mdir, "XDG_DATA_HOME=" + mdir, "XDG_CONFIG_HOME=" + mdir}, caddy,
		"run", "--config", file, "--adapter", "caddyfile")
	return p, addr, err
}

// buildCaddy builds examples/caddy of tree into out.
func buildCaddy(ctx context.Context, tree, out string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./examples/caddy")
	cmd.Dir = tree
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building Caddy in %s: %w\n%s", tree, err, b)
	}
	rev, _ := exec.CommandContext(ctx, "git", "-C", tree, "rev-parse", "--short=10", "HEAD").Output()
	return strings.TrimSpace(string(rev)), nil
}

// cpuTicks is the user+system CPU of pid, in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return ut + st
}

// memKB returns VmRSS and VmHWM of pid in KiB.
func memKB(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}
