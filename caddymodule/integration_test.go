package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// get fetches path through the example's entrance on a fresh connection,
// so every request takes its own route.
func get(client *http.Client, entrance, path string) (string, error) {
	resp, err := client.Get("http://" + entrance + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %.80q", resp.StatusCode, body)
	}
	return string(body), nil
}

func newClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
}

func TestExampleThroughEntrance(t *testing.T) {
	n := newExampleNet(t)
	n.load(nil)
	n.waitList(n.relays()...)
	entrance := n.addr("8000")

	t.Run("curl", func(t *testing.T) {
		out, err := testkit.Curl(t, "--noproxy", "*", "http://"+entrance+"/")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		if !strings.Contains(out, "Hello from behind the crowd") {
			t.Fatalf("curl got %.200q, want the example page", out)
		}
	})

	// The proxy entrance of the example, used as curl users would: the
	// client names the responder.
	proxy := n.addr("1080")
	responder := n.addr("7100")
	for _, mode := range []struct{ name, flag, proxyURL string }{
		{"socks5", "--socks5-hostname", proxy},
		{"connect", "--proxytunnel", "http://" + proxy},
		{"absolute-form", "--proxy", "http://" + proxy},
	} {
		t.Run("curl via "+mode.name, func(t *testing.T) {
			args := []string{mode.flag, mode.proxyURL}
			if mode.name == "connect" {
				args = []string{"--proxytunnel", "--proxy", mode.proxyURL}
			}
			for i := range 3 {
				path := fmt.Sprintf("/echo/%s-%d", mode.name, i)
				out, err := testkit.Curl(t, append(args, "http://"+responder+path)...)
				if err != nil {
					t.Fatalf("curl %v: %v: %s", args, err, out)
				}
				if out != path {
					t.Fatalf("curl via %s got %.200q, want %q", mode.name, out, path)
				}
			}
		})
	}

	t.Run("sequential", func(t *testing.T) {
		client := newClient()
		for i := range 200 {
			path := fmt.Sprintf("/echo/seq-%d", i)
			body, err := get(client, entrance, path)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if body != path {
				t.Fatalf("request %d: got %.80q, want %q", i, body, path)
			}
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		client := newClient()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Go(func() {
				path := fmt.Sprintf("/echo/conc-%d", i)
				body, err := get(client, entrance, path)
				if err == nil && body != path {
					err = fmt.Errorf("got %.80q, want %q", body, path)
				}
				if err != nil {
					errs <- fmt.Errorf("request %d: %w", i, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestReloadKeepsRegistrations(t *testing.T) {
	n := newExampleNet(t)
	// The outside relay is a fourth service on 127.0.0.1.
	fourPerIP := func(s string) string { return strings.Replace(s, "max_per_ip 3", "max_per_ip 4", 1) }
	n.load(fourPerIP)
	n.waitList(n.relays()...)

	outside := testnet.ServeRelay(t, &gunshu.Relay{})
	if err := gunshu.Register(context.Background(), n.addr("7000"), outside, 5*time.Second); err != nil {
		t.Fatalf("registering %s: %v", outside, err)
	}
	want := append(n.relays(), outside)
	n.waitList(want...)

	// A changed setting makes the load a real reload: every module is
	// provisioned anew and the old config is stopped.
	n.load(func(s string) string {
		return strings.Replace(fourPerIP(s), "patrol_interval 30s", "patrol_interval 40s", 1)
	})
	got, err := n.list()
	if err != nil {
		t.Fatalf("listing after reload: %v", err)
	}
	if !slices.Contains(got, outside) {
		t.Fatalf("after reload the manager lists %v: the registration of %s made before it is lost", got, outside)
	}
}

func TestPatrolDropsRemovedRelay(t *testing.T) {
	n := newExampleNet(t)
	fastPatrol := func(s string) string {
		return strings.Replace(s, "patrol_interval 30s", "patrol_interval 100ms", 1)
	}
	n.load(fastPatrol)
	n.waitList(n.relays()...)

	n.load(func(s string) string { return withoutServer(t, fastPatrol(s), "127.0.0.1:7003") })
	n.waitList(n.addr("7001"), n.addr("7002"))
}

// withoutServer removes the layer4 server block listening on addr.
func withoutServer(t *testing.T, caddyfile, addr string) string {
	t.Helper()
	start := strings.Index(caddyfile, "\t\t"+addr+" {\n")
	if start < 0 {
		start = strings.Index(caddyfile, "\t\tgunshu/"+addr+" {\n")
	}
	if start < 0 {
		t.Fatalf("no server block for %s", addr)
	}
	end := strings.Index(caddyfile[start:], "\n\t\t}\n")
	if end < 0 {
		t.Fatalf("server block for %s does not end", addr)
	}
	rest := strings.TrimPrefix(caddyfile[start+end+len("\n\t\t}\n"):], "\n")
	return caddyfile[:start] + rest
}

// TestStopEndsLoops checks that stopping Caddy ends every patrol and
// registration loop the gunshu app started.
func TestStopEndsLoops(t *testing.T) {
	n := newExampleNet(t)
	n.load(nil)
	n.waitList(n.relays()...)
	loops := []string{"gunshu.(*Manager).Patrol", "gunshu.(*Registrar).keep", "caddymodule.(*RelayHandler).keepRegistered"}
	if running := goroutinesIn(loops); len(running) != len(loops) {
		t.Fatalf("before Stop, running loops are %v, want all of %v", running, loops)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	// Stop waits for the loops, so none may be left at all.
	if running := goroutinesIn(loops); len(running) > 0 {
		t.Fatalf("after Stop, loops still run: %v", running)
	}
}

// goroutinesIn returns which of the functions some goroutine is in.
func goroutinesIn(funcs []string) []string {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	var found []string
	for _, f := range funcs {
		if strings.Contains(stacks, f) {
			found = append(found, f)
		}
	}
	return found
}
