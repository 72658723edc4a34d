package caddymodule

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// echoThrough sends msg through a session on conn and wants it back.
func echoThrough(t *testing.T, conn net.Conn, r io.Reader, msg string) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("writing: %v", err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(r, back); err != nil {
		t.Fatalf("reading: %v", err)
	}
	if string(back) != msg {
		t.Fatalf("got %q, want %q", back, msg)
	}
}

// TestEntranceCoverInCaddy runs an entrance in the same Caddy as a relay
// registered with the same manager: its routes leave from the relay's
// address (127.0.0.2) and never offer that relay, its guard is kept in
// Caddy's storage under the key of manager and cover, and it does not
// warn. Another entrance, for a manager no relay of this Caddy registers
// with, warns that it has no cover.
func TestEntranceCoverInCaddy(t *testing.T) {
	responder := testnet.EchoResponder(t)
	// Outside relays send from 127.0.0.3 and log their predecessor: a
	// predecessor 127.0.0.2 is the entrance, under its cover.
	core, logs := observer.New(zap.InfoLevel)
	var outside []string
	for range 3 {
		r := &gunshu.Relay{
			Policy: testnet.LoopbackPolicy(), LogAddresses: true, Logger: zap.New(core),
			Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}},
		}
		outside = append(outside, testnet.ServeRelayOn(t, r, testkit.ListenOn(t, "127.0.0.3:0")))
	}
	manager := testkit.FreeAddr(t)
	coverRelay := "127.0.0.2:" + testkit.FreePort(t)
	covered, uncovered := testkit.FreeAddr(t), testkit.FreeAddr(t)
	storage, logFile := t.TempDir(), filepath.Join(t.TempDir(), "caddy.log")
	loadCaddyfile(t, strings.NewReplacer("{storage}", storage, "{log}", logFile, "{manager}", manager,
		"{cover}", coverRelay, "{covered}", covered, "{uncovered}", uncovered, "{responder}", responder).Replace(`{
	admin off
	storage file_system {storage}
	log default {
		output file {log}
		format json
		level INFO
	}
	gunshu {
		manager {
			allow 127.0.0.0/8
			max_per_ip 0
		}
	}
	layer4 {
		{manager} {
			route {
				gunshu_manager
			}
		}
		{cover} {
			route {
				gunshu_relay {
					managers {manager}
					advertise {cover}
					allow 127.0.0.0/8
				}
			}
		}
		{covered} {
			route {
				gunshu_initiator {responder} {
					manager {manager}
				}
			}
		}
		{uncovered} {
			route {
				gunshu_initiator {responder} {
					manager 127.0.0.1:9
				}
			}
		}
	}
}`))
	for _, r := range outside {
		if err := gunshu.Register(context.Background(), manager, r, 5*time.Second); err != nil {
			t.Fatalf("registering %s: %v", r, err)
		}
	}
	testnet.WaitListing(t, manager, append(outside, coverRelay), 10*time.Second)

	for i := range 20 {
		conn, err := net.DialTimeout("tcp", covered, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		echoThrough(t, conn, conn, fmt.Sprintf("route %d under cover\n", i))
		conn.Close()
	}

	// A relay logs a session when it ends, a moment after the client's.
	firstHops := 0
	for deadline := time.Now().Add(5 * time.Second); firstHops < 20 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		firstHops = 0
		for _, e := range logs.FilterMessage("session").AllUntimed() {
			fields := e.ContextMap()
			// Routes only: the manager's probes (est with an empty
			// list, answered fail) come from its own address.
			if fields["command"] != gunshu.CmdEst || fields["outcome"] != string(gunshu.OutcomeOK) {
				continue
			}
			host, _, _ := net.SplitHostPort(fmt.Sprint(fields["remote"]))
			switch host {
			case "127.0.0.2":
				firstHops++
			case "127.0.0.3":
			default:
				t.Fatalf("an outside relay got a route from %s: not the cover's address", fields["remote"])
			}
		}
	}
	if firstHops != 20 {
		t.Errorf("%d of 20 routes reached an outside first hop from the cover's address", firstHops)
	}
	stored, err := os.ReadFile(filepath.Join(storage, filepath.FromSlash(gunshu.GuardKey(manager, coverRelay))))
	if err != nil {
		t.Fatalf("guard set in Caddy's storage: %v", err)
	}
	if strings.Contains(string(stored), coverRelay) || !strings.Contains(string(stored), "127.0.0.3:") {
		t.Errorf("guard set %s: want an outside relay, never the cover", stored)
	}

	logText, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(logText), "this entrance has no cover"); got != 1 {
		t.Errorf("the no-cover warning is logged %d times, want once (for the entrance without a relay):\n%s", got, logText)
	}
	if !strings.Contains(string(logText), `"cover":"`+coverRelay+`"`) {
		t.Errorf("the covered entrance does not log its cover:\n%s", logText)
	}
}

// TestProxyEntranceInCaddy runs a proxy entrance (no responder) whose
// password comes from the environment: an HTTP CONNECT with the
// credentials gets a route, one without gets 407.
func TestProxyEntranceInCaddy(t *testing.T) {
	n := testnet.New(t, 3)
	responder := testnet.EchoResponder(t)
	t.Setenv("GUNSHU_TEST_PROXY_PASSWORD", "s3cret")
	entrance := testkit.FreeAddr(t)
	loadCaddyfile(t, strings.NewReplacer("{storage}", t.TempDir(), "{manager}", n.ManagerAddr, "{entrance}", entrance).Replace(`{
	admin off
	storage file_system {storage}
	log default {
		level ERROR
	}
	layer4 {
		{entrance} {
			route {
				gunshu_initiator {
					manager {manager}
					username alice
					password {env.GUNSHU_TEST_PROXY_PASSWORD}
					handshake_timeout 2s
					guards 0
				}
			}
		}
	}
}`))
	connect := func(auth string) (net.Conn, *bufio.Reader, string) {
		conn, err := net.DialTimeout("tcp", entrance, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := "CONNECT " + responder + " HTTP/1.1\r\nHost: " + responder + "\r\n"
		if auth != "" {
			req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(auth)) + "\r\n"
		}
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		status, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading status: %v", err)
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		return conn, br, status
	}
	if _, _, status := connect(""); !strings.Contains(status, " 407 ") {
		t.Fatalf("without credentials: %q, want 407", status)
	}
	if _, _, status := connect("alice:wrong"); !strings.Contains(status, " 407 ") {
		t.Fatalf("with a wrong password: %q, want 407", status)
	}
	conn, br, status := connect("alice:s3cret")
	if !strings.Contains(status, " 200 ") {
		t.Fatalf("with credentials: %q, want 200", status)
	}
	echoThrough(t, conn, br, "through the proxy entrance\n")
}

// TestRelayLimitKeptAcrossReload: a relay's max_sessions_per_ip counts
// the sessions it holds, and a reload keeps the count (the limiter is
// pooled by the advertised address), until the session ends.
func TestRelayLimitKeptAcrossReload(t *testing.T) {
	relay := testkit.FreeAddr(t)
	// A full relay still answers test (#16.6): the probe is an est to a
	// next hop that answers ok, which only a relay with room passes on.
	okHop := cannedOK(t)
	probe := "est\n1\n" + okHop + "\n"
	text := strings.NewReplacer("{relay}", relay).Replace(`{
	admin off
	log default {
		level ERROR
	}
	layer4 {
		{relay} {
			route {
				gunshu_relay {
					advertise {relay}
					max_sessions_per_ip 1
					allow 127.0.0.0/8
					{extra}
				}
			}
		}
	}
}`)
	loadCaddyfile(t, strings.ReplaceAll(text, "{extra}", ""))
	// A session that says nothing holds its place for the command timeout.
	held := holdSession(t, relay, probe)
	defer held.Close()
	if got, err := opsExchange(relay, "test\n"); err != nil || got != "ok\n" {
		t.Fatalf("test of the full relay: %q (%v), want ok", got, err)
	}

	// The reload changes the relay but not its identity or limits.
	loadCaddyfile(t, strings.ReplaceAll(text, "{extra}", "dial_timeout 3s"))
	waitReply(t, relay, probe, "fail")
	held.Close()
	waitReply(t, relay, probe, "ok")
}

// cannedOK serves a next hop that answers ok to anything and closes.
func cannedOK(t *testing.T) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 256))
		_, _ = io.WriteString(c, "ok\n")
	})
	return ln.Addr().String()
}

// holdSession opens a silent session at a relay that allows one session
// per address, and returns it once a probe from the same address is
// refused. The relay accepts connections concurrently, so a probe can be
// served before the silent session it follows: then the silent one is the
// refused one, and it is opened again.
func holdSession(t *testing.T, addr, probe string) net.Conn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		held, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The relay serves (and counts) it before the probe, as a rule.
		testkit.Eventually(t, 5*time.Second, "the relay serving the silent session", func() bool {
			return value(t, gunshuMetrics.sessionsActive.WithLabelValues("relay")) >= 1
		})
		if got, err := opsExchange(addr, probe); err == nil && strings.TrimSpace(got) == "fail" {
			return held
		}
		held.Close()
	}
	t.Fatalf("a silent session at %s never held its place", addr)
	return nil
}

// waitReply sends probe to addr until the answer is want, within 5 s.
func waitReply(t *testing.T, addr, probe, want string) {
	t.Helper()
	var got string
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, err = opsExchange(addr, probe); err == nil && strings.TrimSpace(got) == want {
			return
		}
	}
	t.Fatalf("%q to %s: %q (%v), want %q", probe, addr, got, err, want)
}

// TestManagerCapsInCaddy: by default a manager lists two services per IP
// address and refuses a service on another address than the registering
// one (require_source_match off lifts that); register_rate limits one
// source's registrations.
func TestManagerCapsInCaddy(t *testing.T) {
	var relays []string
	for range 3 {
		relays = append(relays, testnet.ServeRelay(t, &gunshu.Relay{}))
	}
	other := testnet.ServeRelayOn(t, &gunshu.Relay{}, testkit.ListenOn(t, "127.0.0.2:0"))

	capped, rated, strict, lax := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	loadCaddyfile(t, strings.NewReplacer("{capped}", capped, "{rated}", rated, "{strict}", strict, "{lax}", lax).Replace(`{
	admin off
	log default {
		level ERROR
	}
	gunshu {
		manager capped {
			allow 127.0.0.0/8
		}
		manager rated {
			allow 127.0.0.0/8
			max_per_ip 0
			register_rate 1h 2
		}
		manager strict {
			allow 127.0.0.0/8
			max_per_ip 0
		}
		manager lax {
			allow 127.0.0.0/8
			require_source_match off
		}
	}
	layer4 {
		{capped} {
			route {
				gunshu_manager capped
			}
		}
		{rated} {
			route {
				gunshu_manager rated
			}
		}
		{strict} {
			route {
				gunshu_manager strict
			}
		}
		{lax} {
			route {
				gunshu_manager lax
			}
		}
	}
}`))
	register := func(manager, addr string) error {
		return gunshu.Register(context.Background(), manager, addr, 5*time.Second)
	}
	for i, r := range relays {
		err := register(capped, r)
		if (i < gunshu.DefaultMaxPerIP) != (err == nil) {
			t.Errorf("capped manager, service %d on 127.0.0.1: error %v", i+1, err)
		}
		err = register(rated, r)
		if (i < 2) != (err == nil) {
			t.Errorf("rated manager, registration %d from 127.0.0.1: error %v", i+1, err)
		}
	}
	// Raw exchanges: gunshu.Register would connect from 127.0.0.2.
	if got, err := opsExchange(strict, "reg\n"+other+"\n"); got != "fail\n" {
		t.Errorf("strict manager answered %q (%v) to 127.0.0.2 registered from 127.0.0.1", got, err)
	}
	if err := register(strict, relays[0]); err != nil {
		t.Errorf("strict manager refused 127.0.0.1 registered from 127.0.0.1: %v", err)
	}
	if got, err := opsExchange(lax, "reg\n"+other+"\n"); got != "ok\n" {
		t.Errorf("manager with require_source_match off answered %q (%v) to 127.0.0.2 registered from 127.0.0.1", got, err)
	}
	list, err := fetchSorted(capped)
	if err != nil || len(list) != gunshu.DefaultMaxPerIP {
		t.Errorf("capped manager lists %v (%v), want %d services", list, err, gunshu.DefaultMaxPerIP)
	}
}

// TestConfigValidateJSON covers values that only JSON can carry.
func TestConfigValidateJSON(t *testing.T) {
	neg := -1
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"max_per_ip", (&ManagerConfig{MaxPerIP: &neg}).validate(), "max_per_ip must not be negative, got -1"},
		{"register_rate every", (&ManagerConfig{RegisterRate: &RateConfig{Burst: 2}}).validate(), "register_rate: every must be positive"},
		{"register_rate burst", (&ManagerConfig{RegisterRate: &RateConfig{Every: caddy.Duration(time.Second), Burst: -1}}).validate(), "register_rate: burst must not be negative"},
		{"manager sessions", (&ManagerConfig{SessionLimits: SessionLimits{MaxSessions: -1}}).validate(), "max_sessions must not be negative"},
		{"relay idle", (&RelayHandler{IdleTimeout: -1}).Validate(), "idle_timeout must not be negative"},
		{"relay sessions", (&RelayHandler{SessionLimits: SessionLimits{MaxSessionsPerIP: -2}}).Validate(), "max_sessions_per_ip must not be negative"},
		{"initiator guards", (&InitiatorHandler{RouteConfig: RouteConfig{Manager: "192.0.2.1:7000", Guards: &neg}}).Validate(), "guards must not be negative"},
		{"initiator route_continue", (&InitiatorHandler{RouteConfig: RouteConfig{Manager: "192.0.2.1:7000", RouteContinue: 1.5}}).Validate(), "route_continue 1.5: must be at least 0 and below 1"},
		{"initiator max_relays", (&InitiatorHandler{RouteConfig: RouteConfig{Manager: "192.0.2.1:7000", MaxRelays: -3}}).Validate(), "max_relays must be -1 (the whole list) or more, got -3"},
		{"transport guards", (&Transport{RouteConfig: RouteConfig{Manager: "192.0.2.1:7000", Guards: &neg}}).validate(), "gunshu transport: guards must not be negative"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, c.err, c.want)
		}
	}
	var zero ManagerConfig
	if err := zero.validate(); err != nil {
		t.Errorf("zero manager config: %v", err)
	}
	off := ManagerConfig{RegisterRate: &RateConfig{Off: true, Every: caddy.Duration(time.Second)}}
	if err := off.validate(); err == nil || !strings.Contains(err.Error(), "off takes no every or burst") {
		t.Errorf("register_rate off with every: %v", err)
	}
}
