package caddymodule

import (
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

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

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

func newTeeProxy(t testing.TB, target string) *teeProxy {
	t.Helper()
	ln := testkit.Listen(t)
	p := &teeProxy{addr: ln.Addr().String()}
	testkit.Serve(t, ln, func(c net.Conn) { p.pipe(c, target) })
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
