package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// entNet is a Gunshu network on loopback for the tests of this file's
// modules: a manager and relays from package gunshu, no Caddy needed.
type entNet struct {
	manager string
	relays  []string
	wg      sync.WaitGroup
	closers []func()
}

func entLoopbackPolicy() gunshu.Policy { return gunshu.Policy{Allow: []string{"127.0.0.0/8"}} }

func entListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func newEntNet(t testing.TB, relays int) *entNet {
	t.Helper()
	n := &entNet{}
	t.Cleanup(n.close)
	m := &gunshu.Manager{Policy: entLoopbackPolicy(), TestTimeout: time.Second}
	ln := entListen(t)
	n.manager = ln.Addr().String()
	n.serve(ln, func() { _ = m.Serve(ln) })
	for range relays {
		rln := entListen(t)
		addr := rln.Addr().String()
		r := &gunshu.Relay{Policy: entLoopbackPolicy(), Self: []string{addr}}
		n.serve(rln, func() { _ = r.Serve(rln) })
		n.closers = append(n.closers, func() { _ = r.Close() })
		if err := gunshu.Register(context.Background(), n.manager, addr, 5*time.Second); err != nil {
			t.Fatalf("registering relay: %v", err)
		}
		n.relays = append(n.relays, addr)
	}
	return n
}

func (n *entNet) serve(ln net.Listener, run func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		run()
	}()
	n.closers = append(n.closers, func() { ln.Close() })
}

func (n *entNet) close() {
	for _, c := range n.closers {
		c()
	}
	n.wg.Wait()
}

func (n *entNet) dialer() *gunshu.Dialer { return &gunshu.Dialer{Manager: n.manager} }

// freePort returns a loopback port that was free a moment ago.
func freePortNum(t testing.TB) int {
	t.Helper()
	ln := entListen(t)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// loadCaddy runs config (JSON, with {admin} standing for the test admin
// address) in the in-process Caddy of caddytest, with its storage (where
// entrances keep their guards) in a temporary directory, whose path it
// returns.
func loadCaddy(t *testing.T, config string) string {
	t.Helper()
	config = strings.ReplaceAll(config, "{admin}", fmt.Sprintf("localhost:%d", caddytest.Default.AdminPort))
	var cfg map[string]any
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	var root string
	if _, set := cfg["storage"]; !set {
		storage := testStorage(t)
		root = storage["root"].(string)
		cfg["storage"] = storage
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tester := caddytest.NewTester(t)
	tester.InitServer(string(out), "json")
	if t.Failed() {
		t.FailNow()
	}
	return root
}

// testStorage is a storage config in a fresh temporary directory, so no
// test writes to the user's Caddy data directory.
func testStorage(t testing.TB) map[string]any {
	return map[string]any{"module": "file_system", "root": t.TempDir()}
}

// teeProxy forwards TCP connections to target and records every byte in
// both directions: it sees exactly what the last relay of a route
// forwards.
type teeProxy struct {
	addr   string
	mu     sync.Mutex
	record []byte
}

func newTeeProxy(t testing.TB, n *entNet, target string) *teeProxy {
	t.Helper()
	ln := entListen(t)
	p := &teeProxy{addr: ln.Addr().String()}
	n.serve(ln, func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				p.pipe(c, target)
			}()
		}
	})
	return p
}

func (p *teeProxy) pipe(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(p.writer(up), c)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(p.writer(c), up)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

type teeWriter struct {
	p   *teeProxy
	dst io.Writer
}

func (p *teeProxy) writer(dst io.Writer) io.Writer { return teeWriter{p, dst} }

func (w teeWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	w.p.record = append(w.p.record, b...)
	w.p.mu.Unlock()
	return w.dst.Write(b)
}

func (p *teeProxy) recorded() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.record...)
}
