// Package redistest runs a real redis-server for tests.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a real redis-server on a loopback port, without persistence:
// stopping it and starting it again gives an empty Redis on the same
// address, as a crashed and restarted one would be.
type Server struct {
	// Addr is the server's host:port.
	Addr string

	t    testing.TB
	path string
	dir  string
	port int
	args []string
	conf string // config file, for a Sentinel
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server (from PATH) with extra arguments, and stops
// it, by PID, when the test ends. A missing redis-server fails the test.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH: install the Debian package redis-server (scripts/test does): %v", err)
	}
	port := freePort(t)
	s := &Server{t: t, path: path, dir: t.TempDir(), port: port,
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args: extraArgs}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// freePort returns a loopback port that is free, and whose Cluster bus
// port (10000 above) is free too.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("no free loopback port pair for redis-server")
	return 0
}

// StartCluster starts n redis-server nodes (n ≥ 3) in Cluster mode, no
// replicas, and joins them with redis-cli --cluster create. The nodes
// stop when the test ends.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found in PATH: install the Debian package redis-tools (a dependency of redis-server): %v", err)
	}
	var nodes []*Server
	args := []string{"--cluster", "create"}
	for range n {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
		nodes = append(nodes, s)
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node says the cluster is ok.
	for _, s := range nodes {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			out, _ := exec.CommandContext(ctx, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok: %s", s.Addr, out)
			}
		}
	}
	return nodes
}

// Restart runs the server (empty) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", ""}, s.args...)
	if s.conf != "" {
		args = append([]string{s.conf}, args...) // a config file comes first
	}
	s.cmd = exec.Command(s.path, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("redis-server exited at start (port %d taken?)", s.port)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Stop()
	s.t.Fatal("redis-server did not answer PING within 10s")
}

func (s *Server) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	// +PONG, or -NOAUTH from a server with a password: it is up.
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (line == "+PONG\r\n" || strings.HasPrefix(line, "-NOAUTH"))
}

// Stop ends the server by its PID: SIGTERM, then SIGKILL after 5 s.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// StartSentinel starts a Sentinel monitoring master under the name
// masterName, and waits until it knows the master.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH: %v", err)
	}
	port := freePort(t)
	s := &Server{t: t, path: path, dir: t.TempDir(), port: port,
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args: []string{"--sentinel"}}
	s.conf = filepath.Join(s.dir, "sentinel.conf")
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
		masterName, master.port, masterName)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}
