package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestListenerWrapperMixedClients runs a real Caddy HTTP server with the
// gunshu listener wrapper and sends it 300 concurrent clients, half plain
// HTTP and half through Gunshu routes: every answer must match its own
// request.
func TestListenerWrapperMixedClients(t *testing.T) {
	n := testnet.New(t, 4)
	port := testkit.FreePort(t)
	loadCaddy(t, fmt.Sprintf(`{
		"admin": {"listen": "{admin}"},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {"http": {"servers": {"responder": {
			"listen": ["127.0.0.1:%s"],
			"listener_wrappers": [{"wrapper": "gunshu", "timeout": "5s"}],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "static_response", "body": "echo {http.request.method} {http.request.uri}"}]}]
		}}}}
	}`, port))
	responder := "127.0.0.1:" + port

	d := n.Dialer(1)
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
