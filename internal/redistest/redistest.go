// Package redistest runs a real redis-server for tests.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
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
	port, _ := strconv.Atoi(testkit.FreePortWith(t, 10000))
	return port
}

// StartCluster starts masters × (1 + replicas) redis-server nodes in
// Cluster mode (masters ≥ 3) and joins them with redis-cli --cluster
// create, each master with replicas replicas. A node is deemed failed
// after 2 s without an answer, so a replica takes over a killed master
// within a few seconds. The nodes stop when the test ends.
func StartCluster(t testing.TB, masters, replicas int) []*Server {
	t.Helper()
	cli := redisCLI(t)
	var nodes []*Server
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
		nodes = append(nodes, s)
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node says the cluster is ok and every replica is
	// in sync with its master: only then can a replica take over.
	for _, s := range nodes {
		waitInfo(t, s, 30*time.Second, []string{"cluster", "info"}, "cluster_state:ok")
		waitFor(t, s, 30*time.Second, []string{"cluster", "nodes"}, fmt.Sprintf("%d replicas", masters*replicas), func(out string) bool {
			return strings.Count(out, " slave ")+strings.Count(out, ",slave ") == masters*replicas
		})
	}
	for _, s := range nodes {
		if strings.HasPrefix(s.cli(t, "role"), "slave") {
			waitInfo(t, s, 30*time.Second, []string{"info", "replication"}, "master_link_status:up")
		}
	}
	// Clients learn the replicas from CLUSTER SLOTS, which lists one once
	// the others heard that it replicates.
	for _, s := range nodes {
		waitFor(t, s, 30*time.Second, []string{"cluster", "slots"}, "every node", func(out string) bool {
			for _, n := range nodes {
				if !strings.Contains(out, "\n"+strconv.Itoa(n.port)+"\n") {
					return false
				}
			}
			return true
		})
	}
	return nodes
}

// StartReplica starts a redis-server replicating master.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	s := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	waitInfo(t, s, 30*time.Second, []string{"info", "replication"}, "master_link_status:up")
	return s
}

func redisCLI(t testing.TB) string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found in PATH: install the Debian package redis-tools (a dependency of redis-server): %v", err)
	}
	return cli
}

// cli runs redis-cli against s and returns its output ("" on error).
func (s *Server) cli(t testing.TB, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args = append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.port)}, args...)
	out, _ := exec.CommandContext(ctx, redisCLI(t), args...).Output()
	return string(out)
}

// waitInfo waits until the output of redis-cli args on s contains want.
func waitInfo(t testing.TB, s *Server, within time.Duration, args []string, want string) {
	t.Helper()
	waitFor(t, s, within, args, want, func(out string) bool { return strings.Contains(out, want) })
}

// waitFor waits until the output of redis-cli args on s satisfies ok.
func waitFor(t testing.TB, s *Server, within time.Duration, args []string, what string, ok func(string) bool) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		out := s.cli(t, args...)
		if ok(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v never said %s: %s", s.Addr, args, what, out)
		}
	}
}

// Restart runs the server (empty) and waits until it answers; it fails
// the test if it does not.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.TryRestart(); err != nil {
		s.t.Fatal(err)
	}
}

// TryRestart is Restart returning its error, for goroutines other than
// the test's.
func (s *Server) TryRestart() error {
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", ""}, s.args...)
	if s.conf != "" {
		args = append([]string{s.conf}, args...) // a config file comes first
	}
	s.cmd = exec.Command(s.path, args...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() {
			return nil
		}
		select {
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("redis-server exited at start (port %d taken?)", s.port)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Stop()
	return errors.New("redis-server did not answer PING within 10s")
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

// Kill ends the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// StartSentinel starts a Sentinel monitoring master under the name
// masterName, and waits until it knows the master.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	return StartSentinels(t, master, masterName, 1, 1)[0]
}

// StartSentinels starts n Sentinels monitoring master under masterName
// with the given quorum. A master is deemed down after 1 s without an
// answer; they wait until each knows the others and the master's
// replicas, so that a failover can be agreed on.
func StartSentinels(t testing.TB, master *Server, masterName string, n, quorum int) []*Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH: %v", err)
	}
	replicas := 0
	if m := regexp.MustCompile(`connected_slaves:(\d+)`).FindStringSubmatch(master.cli(t, "info", "replication")); m != nil {
		replicas, _ = strconv.Atoi(m[1])
	}
	var sentinels []*Server
	for range n {
		port := freePort(t)
		s := &Server{t: t, path: path, dir: t.TempDir(), port: port,
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args: []string{"--sentinel"}}
		s.conf = filepath.Join(s.dir, "sentinel.conf")
		conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
			"sentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 10000\n",
			masterName, master.port, quorum)
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Restart()
		t.Cleanup(s.Stop)
		sentinels = append(sentinels, s)
	}
	for _, s := range sentinels {
		waitInfo(t, s, 30*time.Second, []string{"info", "sentinel"},
			fmt.Sprintf("status=ok,address=%s,slaves=%d,sentinels=%d", master.Addr, replicas, n))
	}
	return sentinels
}
