package gunshu_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// cannedServer answers every connection with reply and closes it; with
// hold, it answers nothing and keeps the connection open until the test
// ends (a peer that accepts and never answers).
func cannedServer(t testing.TB, reply string, hold bool) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		if hold {
			_, _ = io.Copy(io.Discard, c) // until the test ends and closes c
			return
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Read(make([]byte, 4096))
		_, _ = c.Write([]byte(reply))
	})
	return ln.Addr().String()
}

// badEnv is one server of each role plus misbehaving peers for them.
type badEnv struct {
	manager, relay, responder, entrance string
	failer, garbler, closer, silent     string
	closed                              string
	managerReply                        atomic.Pointer[string] // what the entrance's manager lists
	relayServer                         *gunshu.Relay
}

func newBadEnv(t *testing.T) *badEnv {
	env := &badEnv{}
	local := func() gunshu.Policy { return gunshu.Policy{Allow: []string{"127.0.0.1/32"}} }
	tm := gunshu.Timeouts{Command: 2 * time.Second, Dial: time.Second, Route: time.Second}
	env.failer = cannedServer(t, "fail\n", false)
	env.garbler = cannedServer(t, "nope\n", false)
	env.closer = cannedServer(t, "", false)
	env.silent = cannedServer(t, "", true)
	env.closed = testkit.ClosedAddr(t)
	env.manager = testnet.ServeManager(t, &gunshu.Manager{Policy: local(), TestTimeout: time.Second, Timeouts: tm})

	relayLn := testkit.Listen(t)
	env.relayServer = &gunshu.Relay{Policy: local(), Timeouts: tm, Self: []string{relayLn.Addr().String()}}
	env.relay = testnet.ServeRelayOn(t, env.relayServer, relayLn)

	respLn := testkit.Listen(t)
	rl := (&gunshu.Responder{Timeouts: tm}).Listen(respLn, 0)
	env.responder = respLn.Addr().String()
	testkit.Serve(t, rl, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	})

	// The entrance's manager lists whatever the case says.
	mgrLn := testkit.Listen(t)
	go func() {
		for {
			c, err := mgrLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Read(make([]byte, 64))
				_, _ = c.Write([]byte(*env.managerReply.Load()))
			}()
		}
	}()
	t.Cleanup(func() { mgrLn.Close() })
	env.useGoodList()
	entrance := &gunshu.Entrance{
		Dialer: &gunshu.Dialer{
			// Every route asks the manager and believes only its answer:
			// each case's reply is what the entrance must cope with
			// (ListStaleLimit would route over the last good list).
			Manager: mgrLn.Addr().String(), Attempts: 1, ListTTL: -1, ListStaleLimit: -1,
			Timeouts: gunshu.Timeouts{Command: time.Second, Dial: time.Second, Route: time.Second},
		},
		Responder: env.responder,
	}
	entLn := testkit.Listen(t)
	testkit.Serve(t, entLn, func(c net.Conn) { _ = entrance.ServeConn(c) })
	env.entrance = entLn.Addr().String()
	return env
}

func (env *badEnv) useGoodList() {
	good := "1\n" + env.relay + "\n"
	env.managerReply.Store(&good)
}

// goodSession proves the server of role still works.
func (env *badEnv) goodSession(role string) error {
	switch role {
	case "manager":
		if got := exchangeErr(env.manager, "reg\n"+env.relay+"\n"); got != "ok\n" {
			return fmt.Errorf("reg of a live relay = %q", got)
		}
		return nil
	case "relay":
		return echoOver(env.relay, "est\n1\n"+env.responder+"\n", true)
	case "responder":
		return echoOver(env.responder, "est\n1\n"+env.relay+"\n", true)
	case "entrance":
		env.useGoodList()
		return echoOver(env.entrance, "", false)
	}
	return errors.New("unknown role")
}

// echoOver sends handshake (when gunshu, waits for ok and sends forward),
// then checks that a message comes back.
func echoOver(addr, handshake string, gunshu bool) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if gunshu {
		if _, err := c.Write([]byte(handshake)); err != nil {
			return err
		}
		reply := make([]byte, 3)
		if _, err := io.ReadFull(c, reply); err != nil || string(reply) != "ok\n" {
			return fmt.Errorf("handshake reply %q, %v", reply, err)
		}
		if _, err := io.WriteString(c, "forward\n"); err != nil {
			return err
		}
	}
	msg := []byte("the crowd hides the walker")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading echo: %w", err)
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

// exchangeErr sends msg, half-closes and returns what came back until the
// server closed (bounded by 5 s).
func exchangeErr(addr, msg string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(msg))
	got, _ := io.ReadAll(io.LimitReader(c, 64<<10))
	return string(got)
}

// TestBadInput sends malformed, hostile or truncated input to every role
// and to the peers they talk to. Each case gets its fail (or a close
// where no reply is due) — no panic, no hang — and a good session on the
// same server works right after it.
func TestBadInputAcrossRoles(t *testing.T) {
	env := newBadEnv(t)
	long := strings.Repeat("a", 2000)
	type badCase struct {
		role, name string
		send       func(env *badEnv) string
		halfClose  bool   // end the request with a FIN, truncating it
		list       string // for the entrance: what its manager lists
		want       string // the whole reply before the server closed
	}
	s := func(msg string) func(*badEnv) string { return func(*badEnv) string { return msg } }
	est := func(entries ...func(*badEnv) string) func(*badEnv) string {
		return func(env *badEnv) string {
			b := fmt.Sprintf("est\n%d\n", len(entries))
			for _, e := range entries {
				b += e(env) + "\n"
			}
			return b
		}
	}
	relayAddr := func(env *badEnv) string { return env.relay }
	cases := []badCase{
		// Manager.
		{role: "manager", name: "unknown command", send: s("hello\n"), want: "fail\n"},
		{role: "manager", name: "empty line", send: s("\n"), want: "fail\n"},
		{role: "manager", name: "line too long", send: s(long + "\n"), want: "fail\n"},
		{role: "manager", name: "binary junk", send: s("\x00\xff\x16\x03\x01\n"), want: "fail\n"},
		{role: "manager", name: "reg without address", send: s("reg\n"), halfClose: true, want: "fail\n"},
		{role: "manager", name: "reg not an address", send: s("reg\nnot an address\n"), want: "fail\n"},
		{role: "manager", name: "reg port 0", send: s("reg\n127.0.0.1:0\n"), want: "fail\n"},
		{role: "manager", name: "reg port 65536", send: s("reg\n127.0.0.1:65536\n"), want: "fail\n"},
		{role: "manager", name: "reg IPv6 without brackets", send: s("reg\n::1:80\n"), want: "fail\n"},
		{role: "manager", name: "reg zoned IPv6", send: s("reg\n[fe80::1%eth0]:80\n"), want: "fail\n"},
		{role: "manager", name: "reg decimal IPv4", send: s("reg\n2130706433:80\n"), want: "fail\n"},
		{role: "manager", name: "reg hex IPv4", send: s("reg\n0x7f000001:80\n"), want: "fail\n"},
		{role: "manager", name: "reg denied address", send: s("reg\n127.0.0.2:7000\n"), want: "fail\n"},
		{role: "manager", name: "reg denied port", send: s("reg\n127.0.0.1:25\n"), want: "fail\n"},
		{role: "manager", name: "reg closed port", send: func(env *badEnv) string { return "reg\n" + env.closed + "\n" }, want: "fail\n"},
		{role: "manager", name: "reg service answering fail", send: func(env *badEnv) string { return "reg\n" + env.failer + "\n" }, want: "fail\n"},
		{role: "manager", name: "reg service answering junk", send: func(env *badEnv) string { return "reg\n" + env.garbler + "\n" }, want: "fail\n"},
		{role: "manager", name: "reg silent service", send: func(env *badEnv) string { return "reg\n" + env.silent + "\n" }, want: "fail\n"},
		{role: "manager", name: "est to a manager", send: est(relayAddr), want: "fail\n"},
		// Relay.
		{role: "relay", name: "unknown command", send: s("hello\n"), want: "fail\n"},
		{role: "relay", name: "reply as command", send: s("ok\n"), want: "fail\n"},
		{role: "relay", name: "forward before est", send: s("forward\n"), want: "fail\n"},
		{role: "relay", name: "line too long", send: s(long), want: "fail\n"},
		{role: "relay", name: "TLS hello cut short", send: s("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), halfClose: true, want: ""},
		{role: "relay", name: "negative count", send: s("est\n-1\n"), want: "fail\n"},
		{role: "relay", name: "count not a number", send: s("est\nabc\n"), want: "fail\n"},
		{role: "relay", name: "count over the limit", send: s("est\n2000\n"), want: "fail\n"},
		{role: "relay", name: "count overflowing", send: s("est\n99999999999999999999\n"), want: "fail\n"},
		{role: "relay", name: "empty list", send: s("est\n0\n"), want: "fail\n"},
		{role: "relay", name: "list shorter than its count", send: s("est\n2\n127.0.0.1:9\n"), halfClose: true, want: "fail\n"},
		{role: "relay", name: "duplicate entries", send: func(env *badEnv) string { return "est\n2\n" + env.responder + "\n" + env.responder + "\n" }, want: "fail\n"},
		{role: "relay", name: "list naming the relay", send: est(relayAddr), want: "fail\n"},
		{role: "relay", name: "entry without port", send: s("est\n1\nexample.com\n"), want: "fail\n"},
		{role: "relay", name: "entry with port 0", send: s("est\n1\nexample.com:0\n"), want: "fail\n"},
		{role: "relay", name: "entry with trailing junk", send: s("est\n1\n[::1]:80 x\n"), want: "fail\n"},
		{role: "relay", name: "private next hop", send: s("est\n1\n10.0.0.1:80\n"), want: "fail\n"},
		{role: "relay", name: "metadata next hop", send: s("est\n1\n169.254.169.254:80\n"), want: "fail\n"},
		{role: "relay", name: "mail port next hop", send: s("est\n1\n127.0.0.1:25\n"), want: "fail\n"},
		{role: "relay", name: "next hop closed", send: func(env *badEnv) string { return "est\n1\n" + env.closed + "\n" }, want: "fail\n"},
		{role: "relay", name: "next hop answers fail", send: func(env *badEnv) string { return "est\n1\n" + env.failer + "\n" }, want: "fail\n"},
		{role: "relay", name: "next hop answers junk", send: func(env *badEnv) string { return "est\n1\n" + env.garbler + "\n" }, want: "fail\n"},
		{role: "relay", name: "next hop hangs up", send: func(env *badEnv) string { return "est\n1\n" + env.closer + "\n" }, want: "fail\n"},
		{role: "relay", name: "next hop never answers", send: func(env *badEnv) string { return "est\n1\n" + env.silent + "\n" }, want: "fail\n"},
		{role: "relay", name: "junk instead of forward", send: func(env *badEnv) string { return "est\n1\n" + env.responder + "\nforwarding\n" }, want: "fail\n"},
		{role: "relay", name: "no forward after ok", send: func(env *badEnv) string { return "est\n1\n" + env.responder + "\n" }, halfClose: true, want: "ok\n"},
		// Responder.
		{role: "responder", name: "unknown command", send: s("hello\n"), want: "fail\n"},
		{role: "responder", name: "reg to a responder", send: s("reg\n192.0.2.1:80\n"), want: "fail\n"},
		{role: "responder", name: "line too long", send: s("est\n" + long + "\n"), want: "fail\n"},
		{role: "responder", name: "count not a number", send: s("est\n1x\n"), want: "fail\n"},
		{role: "responder", name: "malformed entry", send: s("est\n1\nbad\n"), want: "fail\n"},
		{role: "responder", name: "list shorter than its count", send: s("est\n2\n192.0.2.1:80\n"), halfClose: true, want: "fail\n"},
		{role: "responder", name: "junk instead of forward", send: s("est\n1\n192.0.2.1:80\nfwd\n"), want: "ok\n"},
		// Entrance: its manager and first hop misbehave.
		{role: "entrance", name: "manager lists junk", list: "zz\n", want: ""},
		{role: "entrance", name: "manager lists too many", list: "5000\n", want: ""},
		{role: "entrance", name: "manager lists a malformed address", list: "1\nnot-an-addr\n", want: ""},
		{role: "entrance", name: "manager lists nothing", list: "0\n", want: ""},
		{role: "entrance", name: "manager hangs up", list: "", want: ""},
		{role: "entrance", name: "first hop answers fail", list: "failer", want: ""},
		{role: "entrance", name: "first hop answers junk", list: "garbler", want: ""},
		{role: "entrance", name: "first hop closed", list: "closed", want: ""},
	}
	baseline := runtime.NumGoroutine()
	for _, c := range cases {
		t.Run(c.role+"/"+c.name, func(t *testing.T) {
			addr := map[string]string{"manager": env.manager, "relay": env.relay, "responder": env.responder, "entrance": env.entrance}[c.role]
			msg := ""
			if c.send != nil {
				msg = c.send(env)
			}
			if c.role == "entrance" {
				list := c.list
				if hop := map[string]string{"failer": env.failer, "garbler": env.garbler, "closed": env.closed}[list]; hop != "" {
					list = "1\n" + hop + "\n"
				}
				env.managerReply.Store(&list)
				msg = "hello through the crowd"
			}
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil && c.want == "" && isReset(err) {
				// An entrance resets a client it has no route for; the
				// reset can beat the end of connect.
				if err := env.goodSession(c.role); err != nil {
					t.Fatalf("good session afterwards: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			_ = conn.SetDeadline(start.Add(5 * time.Second))
			if _, err := conn.Write([]byte(msg)); err != nil && !(c.want == "" && isReset(err)) {
				t.Fatal(err)
			}
			if c.halfClose {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			got, err := io.ReadAll(io.LimitReader(conn, 64<<10))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no close within %v (got %q)", time.Since(start), got)
			}
			if string(got) != c.want {
				t.Fatalf("reply %q, want %q", got, c.want)
			}
			if err := env.goodSession(c.role); err != nil {
				t.Fatalf("good session afterwards: %v", err)
			}
		})
	}
	// Nothing was left behind: the relay holds no session and the
	// goroutines are back to where they were.
	testkit.Eventually(t, 2*time.Second, "relay sessions to end", func() bool { return env.relayServer.Active() == 0 })
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > baseline+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline+2 {
		t.Fatalf("%d goroutines after the cases, %d before", n, baseline)
	}
}
