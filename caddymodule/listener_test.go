package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func TestOpeningSortsFirstBytes(t *testing.T) {
	tests := []struct {
		in   string
		want openingKind
	}{
		{"", openingUndecided},
		{"e", openingUndecided},
		{"est", openingUndecided},
		{"est\r", openingUndecided},
		{"est\n", openingGunshu},
		{"est\r\n3\n", openingGunshu},
		{"test\n", openingGunshu},
		{"tes", openingUndecided},
		{"GET / HTTP/1.1", openingPlain},
		{"\x16\x03\x01", openingPlain},
		{"estate", openingPlain},
		{"test \n", openingPlain},
		{"PRI * HTTP/2.0", openingPlain},
	}
	for _, tt := range tests {
		if got := opening([]byte(tt.in)); got != tt.want {
			t.Errorf("opening(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// serveSorted serves HTTP on a sorting listener over a fresh loopback
// listener; the handler answers "echo <uri>".
func serveSorted(t *testing.T, timeout time.Duration) (*sortingListener, string) {
	t.Helper()
	ln := entListen(t)
	sl := newSortingListener(ln, &gunshu.Responder{}, timeout, 0)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "echo %s", r.RequestURI)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(sl)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		sl.Close()
	})
	return sl, ln.Addr().String()
}

func TestSortingListenerStalledPeersDoNotBlockAccept(t *testing.T) {
	_, addr := serveSorted(t, 30*time.Second)
	// Ten peers that stop inside a Gunshu opening or handshake.
	for _, partial := range []string{"es", "est\n", "est\n1\n", "te", "test"} {
		for range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, partial)
		}
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/after-stalled")
	if err != nil {
		t.Fatalf("plain request behind stalled handshakes: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "echo /after-stalled" {
		t.Fatalf("got %q", body)
	}
}

func TestSortingListenerPassesSilentConnections(t *testing.T) {
	_, addr := serveSorted(t, 100*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // silent past the sorting timeout
	io.WriteString(c, "GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "echo /late" {
		t.Fatalf("got %q", body)
	}
}

func TestSortingListenerCloseEndsPendingSorts(t *testing.T) {
	ln := entListen(t)
	sl := newSortingListener(ln, &gunshu.Responder{}, time.Minute, 0)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "est\n")
	time.Sleep(50 * time.Millisecond) // let it be accepted and start its handshake
	closed := make(chan struct{})
	go func() {
		sl.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited on a stalled handshake")
	}
	if _, err := sl.Accept(); err == nil {
		t.Fatal("Accept after Close returned a connection")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("stalled peer's connection stayed open after Close")
	}
}

// TestListenerWrapperMixedClients runs a real Caddy HTTP server with the
// gunshu listener wrapper and sends it 300 concurrent clients, half plain
// HTTP and half through Gunshu routes: every answer must match its own
// request.
func TestListenerWrapperMixedClients(t *testing.T) {
	n := newEntNet(t, 4)
	port := freePortNum(t)
	loadCaddy(t, fmt.Sprintf(`{
		"admin": {"listen": "{admin}"},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {"http": {"servers": {"responder": {
			"listen": ["127.0.0.1:%d"],
			"listener_wrappers": [{"wrapper": "gunshu", "timeout": "5s"}],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "static_response", "body": "echo {http.request.method} {http.request.uri}"}]}]
		}}}}
	}`, port))
	responder := fmt.Sprintf("127.0.0.1:%d", port)

	d := n.dialer()
	viaGunshu := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return d.DialContext(ctx, addr)
		},
	}}
	plain := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}}

	// The wrapper's responder reports to the metrics, as the handlers do.
	routes := gunshuMetrics.routeResults.WithLabelValues("responder", "ok")
	tests := gunshuMetrics.sessions.WithLabelValues("responder", "test", "ok")
	routes0, tests0 := value(t, routes), value(t, tests)

	const clients = 300
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, clients)
	)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, kind := plain, "plain"
			if i%2 == 1 {
				c, kind = viaGunshu, "gunshu"
			}
			uri := fmt.Sprintf("/%s/%d?x=%d", kind, i, i*7)
			<-start
			resp, err := c.Get("http://" + responder + uri)
			if err != nil {
				errs <- fmt.Errorf("%s client %d: %w", kind, i, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if want := "echo GET " + uri; err != nil || string(body) != want {
				errs <- fmt.Errorf("%s client %d: got %q (%v), want %q", kind, i, body, err, want)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 10 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d clients failed", failed, clients)
	}

	// A manager's patrol gets its ok from the same port.
	c, err := net.Dial("tcp", responder)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "test\n")
	answer, _ := io.ReadAll(c)
	if string(answer) != "ok\n" {
		t.Fatalf("test answered %q, want ok", answer)
	}
	// A route's session ends when the server closes its connection, a
	// moment after the client read the answer.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if value(t, routes)-routes0 == clients/2 && value(t, tests)-tests0 == 1 {
			return
		}
	}
	t.Fatalf("metrics counted %v routes and %v tests, want %d and 1", value(t, routes)-routes0, value(t, tests)-tests0, clients/2)
}

func TestListenerWrapperCaddyfile(t *testing.T) {
	input := `{
		servers {
			listener_wrappers {
				gunshu {
					timeout 3s
					max_pending 10
					log_addresses
				}
				tls
			}
		}
	}
	:8443 {
		respond "hello"
	}`
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapting: %v (%v)", err, warnings)
	}
	want := `"listener_wrappers":[{"log_addresses":true,"max_pending":10,"timeout":3000000000,"wrapper":"gunshu"},{"wrapper":"tls"}]`
	if !strings.Contains(string(out), want) {
		t.Fatalf("adapted config lacks %s:\n%s", want, out)
	}
	for _, bad := range []string{"gunshu extra", "gunshu {\n timeout soon\n }", "gunshu {\n max_pending x\n }", "gunshu {\n nope\n }", "gunshu {\n timeout 1s\n timeout 2s\n }"} {
		input := "{\n servers {\n listener_wrappers {\n " + bad + "\n }\n }\n}\n:8443 {\n respond hi\n}"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil); err == nil {
			t.Errorf("%q adapted without error", bad)
		}
	}
}

// flakyListener fails its first Accepts with EMFILE, as a process out of
// file descriptors sees.
type flakyListener struct {
	net.Listener
	mu       sync.Mutex
	failures int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.failures > 0
	l.failures--
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestSortingListenerSurvivesDescriptorExhaustion(t *testing.T) {
	ln := &flakyListener{Listener: entListen(t), failures: 3}
	sl := newSortingListener(ln, &gunshu.Responder{}, time.Second, 0)
	defer sl.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	got, err := sl.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	defer got.Close()
	first := make([]byte, 4)
	if _, err := io.ReadFull(got, first); err != nil || string(first) != "GET " {
		t.Fatalf("read %q %v", first, err)
	}
}
