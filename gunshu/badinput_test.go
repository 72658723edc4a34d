package gunshu_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// badRequests are requests every server must refuse with fail (or, where
// no reply is due, a close) without hurting anyone else. Each is followed
// by a half-close, so a server waiting for more sees the end at once.
var badRequests = []struct {
	name, request string
	closeOK       bool // a bare close is an acceptable answer too
	relayOnly     bool // only a relay refuses it (a responder ignores the list)
}{
	{name: "unknown command", request: "hello\n"},
	{name: "empty command", request: "\n"},
	{name: "command in capitals", request: "EST\n1\n127.0.0.1:7001\n"},
	{name: "binary junk", request: "\x00\xff\xfe\x16\x03\x01\n"},
	{name: "over-long command", request: strings.Repeat("e", gunshu.DefaultMaxLine+1) + "\n", closeOK: true},
	{name: "over-long without newline", request: strings.Repeat("e", 3*gunshu.DefaultMaxLine), closeOK: true},
	{name: "over-long entry", request: "est\n1\n" + strings.Repeat("a", gunshu.DefaultMaxLine-2) + ".net:1\n"},
	{name: "negative count", request: "est\n-1\n"},
	{name: "signed count", request: "est\n+1\n127.0.0.1:7001\n"},
	{name: "non-numeric count", request: "est\nthree\n"},
	{name: "hex count", request: "est\n0x1\n127.0.0.1:7001\n"},
	{name: "empty count", request: "est\n\n"},
	{name: "huge count", request: "est\n99999999999999999999999999\n"},
	{name: "count over the limit", request: "est\n1025\n"},
	{name: "count past int32", request: "est\n4294967296\n"},
	{name: "count larger than the lines sent", request: "est\n3\n127.0.0.1:7001\n"},
	{name: "count with no lines", request: "est\n2\n"},
	{name: "no count", request: "est\n"},
	{name: "address without port", request: "est\n1\n127.0.0.1\n"},
	{name: "port zero", request: "est\n1\n127.0.0.1:0\n"},
	{name: "port too large", request: "est\n1\n127.0.0.1:65536\n"},
	{name: "port not a number", request: "est\n1\n127.0.0.1:http\n"},
	{name: "negative port", request: "est\n1\n127.0.0.1:-1\n"},
	{name: "empty host", request: "est\n1\n:7001\n"},
	{name: "IPv6 without brackets", request: "est\n1\n::1:7001\n"},
	{name: "IPv4 in brackets", request: "est\n1\n[127.0.0.1]:7001\n"},
	{name: "zoned IPv6", request: "est\n1\n[fe80::1%eth0]:7001\n"},
	{name: "space in host", request: "est\n1\nrelay example.net:7001\n"},
	{name: "numeric top label", request: "est\n1\n127.0.0.256:7001\n"},
	{name: "URL instead of address", request: "est\n1\nhttp://example.net:80/\n"},
	{name: "second of two entries bad", request: "est\n2\n192.0.2.1:7001\nnope\n"},
	{name: "empty list", request: "est\n0\n", relayOnly: true},
	{name: "duplicate entries", request: "est\n2\n192.0.2.1:7001\n192.0.2.1:7001\n", relayOnly: true},
	{name: "duplicates after canonical form", request: "est\n2\nRelay.Example.NET:7001\nrelay.example.net:07001\n", relayOnly: true},
}

// badInputServers starts a relay, a manager and a responder with a short
// command timeout, and a live next hop for the relay.
func badInputServers(t *testing.T) map[string]string {
	timeouts := gunshu.Timeouts{Command: 2 * time.Second, Route: 2 * time.Second}
	resp, _ := serveResponder(t, &gunshu.Responder{Timeouts: timeouts}, func(c net.Conn) { c.Close() })
	return map[string]string{
		"relay":     testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Timeouts: timeouts}),
		"manager":   testnet.ServeManager(t, &gunshu.Manager{Policy: testnet.LoopbackPolicy(), Timeouts: timeouts, TestTimeout: time.Second}),
		"responder": resp,
	}
}

func TestBadInput(t *testing.T) {
	servers := badInputServers(t)
	for role, addr := range servers {
		for _, tc := range badRequests {
			if tc.relayOnly && role != "relay" {
				continue
			}
			request := tc.request
			if role == "manager" && strings.HasPrefix(request, "est\n") {
				// The manager's argument-taking command is reg.
				request = strings.Replace(request, "est\n", "reg\n", 1)
				if strings.HasPrefix(request, "reg\n1\n") {
					request = "reg\n" + strings.TrimPrefix(request, "reg\n1\n")
				}
			}
			t.Run(role+"/"+tc.name, func(t *testing.T) {
				c := dialRaw(t, addr)
				writeRaw(t, c, request)
				_ = c.CloseWrite()
				start := time.Now()
				got := readToEnd(t, c)
				if got != "fail\n" && !(tc.closeOK && got == "") {
					t.Errorf("request %.60q: got %q, want %q", request, got, "fail\n")
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("the answer took %v: the server waited instead of refusing", d)
				}
				// The server still serves others.
				if got := exchange(t, addr, "test\n"); got != "ok\n" && role != "manager" {
					t.Fatalf("test after bad input: got %q", got)
				}
				if role == "manager" {
					if got := exchange(t, addr, "list\n"); got != "0\n" {
						t.Fatalf("list after bad input: got %q", got)
					}
				}
			})
		}
	}
}

// TestBadInputNoNewline: a peer that sends part of a command and then
// nothing is cut off when the command timeout passes; meanwhile, and
// afterwards, the server answers others.
func TestBadInputNoNewline(t *testing.T) {
	timeouts := gunshu.Timeouts{Command: 300 * time.Millisecond}
	resp, _ := serveResponder(t, &gunshu.Responder{Timeouts: timeouts}, func(c net.Conn) { c.Close() })
	servers := map[string]string{
		"relay":     testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Timeouts: timeouts}),
		"manager":   testnet.ServeManager(t, &gunshu.Manager{Policy: testnet.LoopbackPolicy(), Timeouts: timeouts}),
		"responder": resp,
	}
	for role, addr := range servers {
		for _, partial := range []string{"", "es", "est\n1", "est\n1\n127.0.0.1:70", "list"} {
			t.Run(role+"/"+partial, func(t *testing.T) {
				t.Parallel()
				stuck := dialRaw(t, addr)
				writeRaw(t, stuck, partial)
				probe := "test\n"
				want := "ok\n"
				if role == "manager" {
					probe, want = "list\n", "0\n"
				}
				if got := exchange(t, addr, probe); got != want {
					t.Fatalf("%s beside a stuck peer: got %q, want %q", probe, got, want)
				}
				start := time.Now()
				got, err := readUntilClosed(stuck, 3*time.Second)
				if err != nil && !isReset(err) {
					t.Fatalf("the stuck peer was not cut off (read %q): %v", got, err)
				}
				if got != "" && got != "fail\n" {
					t.Fatalf("the stuck peer got %q", got)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("cut off after %v, the command timeout is %v", d, timeouts.Command)
				}
			})
		}
	}
}

// TestBadInputDataBeforeForward: after ok the relay expects forward; any
// other line ends the route at both ends and nothing of it goes on.
func TestBadInputDataBeforeForward(t *testing.T) {
	for _, junk := range []string{"GET / HTTP/1.0\r\n", "forwardx\n", "ok\n", "est\n0\n"} {
		t.Run(junk, func(t *testing.T) {
			next := newFakeHop(t)
			relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
			up := dialRaw(t, relay)
			writeRaw(t, up, "est\n1\n"+next.addr+"\n")
			down := next.answerOK(t, up)
			writeRaw(t, up, junk)
			expectClosed(t, down, ioWait)
			expectClosed(t, up, ioWait)
		})
	}
	t.Run("responder", func(t *testing.T) {
		accepted := make(chan net.Conn, 1)
		resp, _ := serveResponder(t, &gunshu.Responder{}, func(c net.Conn) { accepted <- c })
		up := dialRaw(t, resp)
		writeRaw(t, up, "est\n0\n")
		expectRead(t, up, "ok\n")
		writeRaw(t, up, "GET / HTTP/1.0\r\n\r\n")
		expectClosed(t, up, ioWait)
		select {
		case c := <-accepted:
			c.Close()
			t.Fatal("a stream without forward was accepted")
		default:
		}
	})
}

// TestBadInputRouteLoops: a relay refuses a list naming itself.
func TestBadInputRouteLoops(t *testing.T) {
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
	if got := exchange(t, relay, "est\n2\n192.0.2.1:7001\n"+relay+"\n"); got != "fail\n" {
		t.Fatalf("got %q, want %q", got, "fail\n")
	}
}

// TestBadInputLimits: configured limits are applied, not the defaults.
func TestBadInputLimits(t *testing.T) {
	next := newFakeHop(t)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), MessageLimits: gunshu.MessageLimits{MaxLine: 32, MaxList: 2}})
	if got := exchange(t, relay, "est\n3\n"); got != "fail\n" {
		t.Fatalf("count 3 with limit 2: got %q", got)
	}
	if got := exchange(t, relay, "est\n1\n"+strings.Repeat("a", 30)+".net:7001\n"); got != "fail\n" {
		t.Fatalf("39-byte line with limit 32: got %q", got)
	}
	up := dialRaw(t, relay)
	writeRaw(t, up, "est\n2\n"+next.addr+"\n"+next.addr+"\n")
	if got := readToEnd(t, up); got != "fail\n" {
		t.Fatalf("duplicate: got %q", got)
	}
}

// TestBadInputMappedSpellings: an IPv4-mapped IPv6 address is the same
// destination as its IPv4 address, so a list naming one hop in both
// spellings, or the relay itself in the mapped one, is refused before any
// connection is made.
func TestBadInputMappedSpellings(t *testing.T) {
	mapped := func(addr string) string { return "[::ffff:" + strings.Replace(addr, ":", "]:", 1) }
	var count estCounter
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Observer: &count})
	next := newFakeHop(t)
	for _, list := range [][]string{{next.addr, mapped(next.addr)}, {mapped(relay)}} {
		before := count.started.Load()
		req := "est\n" + strconv.Itoa(len(list)) + "\n" + strings.Join(list, "\n") + "\n"
		if got := exchange(t, relay, req); got != "fail\n" {
			t.Fatalf("%q: got %q, want %q", list, got, "fail\n")
		}
		if n := count.started.Load() - before; n != 1 {
			t.Fatalf("%q: the relay opened %d sessions, so it connected to itself", list, n)
		}
	}
	_ = next.ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if c, err := next.ln.Accept(); err == nil {
		c.Close()
		t.Fatal("the relay dialed a hop named twice")
	}
}
