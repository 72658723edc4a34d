package redisregistry

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// redisServer is a real redis-server on a loopback port, without
// persistence: stopping it and starting it again gives an empty Redis on
// the same address, as a crashed and restarted one would be.
type redisServer struct {
	t    testing.TB
	path string
	dir  string
	port int
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts redis-server (from PATH) and stops it, by PID, when
// the test ends.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH: install the Debian package redis-server (scripts/test does): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &redisServer{t: t, path: path, dir: t.TempDir(), port: port, Addr: ln.Addr().String()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start runs the server and waits until it answers PING.
func (s *redisServer) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.path, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", "")
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

func (s *redisServer) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// Stop ends the server by its PID: SIGTERM, then SIGKILL after 5 s.
func (s *redisServer) Stop() {
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
