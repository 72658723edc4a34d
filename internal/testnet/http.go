package testnet

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// What the tests of ordinary clients (Go's HTTP client, curl, a browser)
// need: entrances to come in by, and web sites behind responders.

// ServeEntrance serves e, with an initiator of n unless it has one, on a
// loopback port until the test ends, and returns its address.
func (n *Network) ServeEntrance(t testing.TB, e *gunshu.Entrance) string {
	t.Helper()
	if e.Dialer == nil {
		e.Dialer = n.Dialer(7)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) { _ = e.ServeConn(c) })
	return ln.Addr().String()
}

// HTTPResponder serves h behind a Gunshu responder until the test ends,
// and returns its address.
func HTTPResponder(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := testkit.Listen(t)
	rl := (&gunshu.Responder{}).Listen(ln, 0)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(rl)
	}()
	t.Cleanup(func() { srv.Close(); rl.Wait(); <-done })
	return ln.Addr().String()
}

// Page is the web page PageResponder serves at /; its Message is what a
// browser shows.
const (
	Page = `<!DOCTYPE html><html><head><title>Gunshu responder</title></head>` +
		`<body style="font:32px sans-serif"><h1>Gunshu responder</h1>` + Message + `</body></html>`
	Message = `<p id="msg">hello through the crowd</p>`
)

// PageResponder is an HTTPResponder that serves Page at / and answers
// "path <path> host <host> body <body>" elsewhere.
func PageResponder(t testing.TB) string {
	t.Helper()
	return HTTPResponder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, Page)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "path %s host %s body %s", r.URL.Path, r.Host, body)
	}))
}
