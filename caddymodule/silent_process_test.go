package caddymodule

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestHelperCaddyProcess is not a test: run by caddyProcess as a child,
// it is a Caddy process that loads the Caddyfile named by
// GUNSHU_CADDYFILE, says "ready" and runs until its stdin ends.
func TestHelperCaddyProcess(t *testing.T) {
	path := os.Getenv("GUNSHU_CADDYFILE")
	if path == "" {
		return
	}
	text, err := os.ReadFile(path)
	if err != nil {
		os.Exit(2)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(text, nil)
	if err == nil {
		err = caddy.Load(cfg, true)
	}
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(3)
	}
	os.Stdout.WriteString("ready\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = caddy.Stop()
	os.Exit(0)
}

// caddyProcess runs a Caddy process (this test binary) with the
// Caddyfile text; stop ends it and waits for it to exit.
func caddyProcess(t *testing.T, text string) (stop func()) {
	t.Helper()
	path := t.TempDir() + "/Caddyfile"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	child := testkit.StartChild(t, "^TestHelperCaddyProcess$", "GUNSHU_CADDYFILE="+path)
	if child.First != "ready" {
		t.Fatalf("the Caddy process said %q, not ready", child.First)
	}
	return child.Stop
}

// TestSilentClientsInCaddyProcess (#16.7): a fixed entrance in a Caddy
// process builds few routes for 200 connections that close without a
// byte, at most max_silent for clients that stay silent, and still
// serves a protocol whose server speaks first.
func TestSilentClientsInCaddyProcess(t *testing.T) {
	const maxSilent = 4
	// One relay, max_relays 1: every route holds exactly one relay, so
	// its est sessions count routes.
	obs := &testnet.SessionLog{}
	n := testnet.New(t, 0)
	r := n.AddRelayOn(t, testkit.Listen(t), func(r *gunshu.Relay) { r.Observer = obs })
	responder := testnet.AppResponder(t, func(c net.Conn) {
		if _, err := io.WriteString(c, "220 ready\r\n"); err == nil {
			_, _ = io.Copy(io.Discard, c)
		}
	})
	entrance := testkit.FreeAddr(t)
	stop := caddyProcess(t, strings.NewReplacer("{entrance}", entrance, "{manager}", n.ManagerAddr, "{responder}", responder).Replace(`{
	admin off
	log default {
		level ERROR
	}
	layer4 {
		{entrance} {
			route {
				gunshu_initiator {responder} {
					manager {manager}
					max_relays 1
					guards 0
					silent_wait 200ms
					max_silent 4
					handshake_timeout 1s
				}
			}
		}
	}
}`))

	// 200 connections that close without a byte: routes start at accept
	// only while the budget of wasted ones lasts (max_silent, then one
	// a second).
	begin := time.Now()
	for range 200 {
		c, err := net.DialTimeout("tcp", entrance, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// Every route they got has ended once the relay is idle; wait a
	// little past the last connection so its route has started.
	time.Sleep(200 * time.Millisecond)
	testkit.Eventually(t, 10*time.Second, "the relay's sessions to end", func() bool { return r.Active() == 0 })
	empty := obs.Routes.Load()
	t.Logf("200 empty connections in %v: %d routes", time.Since(begin), empty)
	if bound := maxSilent + 1 + int64(time.Since(begin)/time.Second); empty > bound {
		t.Fatalf("%d routes for 200 empty connections, want at most %d; the relay's sessions:\n%s", empty, bound, obs)
	}

	// A server-speaks-first session: the banner comes without a byte
	// from the client.
	c, err := net.DialTimeout("tcp", entrance, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	banner := make([]byte, len("220 ready\r\n"))
	if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "220 ready\r\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	c.Close()

	// 12 silent clients: maxSilent get routes, the others are reset
	// after handshake_timeout.
	silent := make([]net.Conn, 12)
	for i := range silent {
		if silent[i], err = net.DialTimeout("tcp", entrance, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		defer silent[i].Close()
	}
	refused := 0
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeoutErr(err) {
			refused++ // reset by the entrance
		}
	}
	if refused != len(silent)-maxSilent {
		t.Fatalf("%d of %d silent clients refused, want %d", refused, len(silent), len(silent)-maxSilent)
	}
	stop() // every session of the entrance ends, and so its routes
	testkit.Eventually(t, 10*time.Second, "the relay's sessions to end", func() bool { return r.Active() == 0 })
	if routes := obs.Routes.Load() - empty; routes != 1+maxSilent {
		t.Fatalf("%d routes for 1 speaking and 12 silent clients, want %d", routes, 1+maxSilent)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
