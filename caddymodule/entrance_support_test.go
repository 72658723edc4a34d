package caddymodule

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

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
