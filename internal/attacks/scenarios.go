package attacks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// SybilsOfOthers registers, from the source IP from, 80 relays that listen
// on 40 other loopback addresses (127.0.0.2 to 127.0.0.41), within 5 s,
// and returns how many the manager lists (#16.1).
func SybilsOfOthers(ctx context.Context, manager, from string) (listed int, err error) {
	var ips []string
	for i := 2; i < 42; i++ {
		ips = append(ips, fmt.Sprintf("127.0.0.%d", i))
	}
	fakes, err := FakeRelays(ips, 80)
	if err != nil {
		return 0, err
	}
	defer fakes.Close()
	RegisterFlood(ctx, manager, from, fakes.Addrs, 5*time.Second, 1)
	return Listed(manager, fakes.Addrs)
}

// NetworkSybils has 20 relays of one /24 (127.0.1.1 to 127.0.1.20)
// register themselves, each from its own address, and returns how many
// the manager lists (#16.1).
func NetworkSybils(ctx context.Context, manager string) (listed int, err error) {
	var ips []string
	for i := 1; i <= 20; i++ {
		ips = append(ips, fmt.Sprintf("127.0.1.%d", i))
	}
	fakes, err := FakeRelays(ips, 20)
	if err != nil {
		return 0, err
	}
	defer fakes.Close()
	for _, a := range fakes.Addrs {
		RegisterFlood(ctx, manager, a[:strings.LastIndex(a, ":")], []string{a}, 5*time.Second, 1)
	}
	return Listed(manager, fakes.Addrs)
}

// Reflection sends, from the source IP from, up to n reg of a third
// party's address (a listener on 127.0.0.250) within 10 s, and returns how
// many connections the manager made to it, how many reg were sent, and
// how long that took (#16.1).
func Reflection(ctx context.Context, manager, from string, n int) (conns int64, sent int, took time.Duration, err error) {
	victim, err := NewCounter("127.0.0.250:0")
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	_, sent = RegisterFlood(ctx, manager, from, victim.Addrs, 10*time.Second, n)
	took = time.Since(start)
	victim.Close()
	return victim.Accepted(), sent, took, nil
}

// LoopRelay is a Caddyfile of one relay that listens on 127.0.0.1 to
// 127.0.0.<addrs> at port, as a relay on a wildcard address (README's
// public relay, ":7001") is reachable at every address of its machine,
// with loopback allowed as in the docs' local networks (#16.3).
func LoopRelay(port string, addrs int) string {
	var listen []string
	for i := 1; i <= addrs; i++ {
		listen = append(listen, fmt.Sprintf("127.0.0.%d:%s", i, port))
	}
	return fmt.Sprintf(`{
	admin off
	layer4 {
		%s {
			@gunshu gunshu est test
			route @gunshu {
				gunshu_relay {
					advertise 127.0.0.1:%s
					allow 127.0.0.0/8
				}
			}
		}
	}
}
`, strings.Join(listen, " "), port)
}

// Spellings are count addresses that reach LoopRelay at port, none of them
// its advertised one, then end: the attacker's list. With names, the
// first two are localhost and 0.0.0.0.
func Spellings(port string, count int, names bool, end string) []string {
	var list []string
	if names {
		list = append(list, "localhost:"+port, "0.0.0.0:"+port)
	}
	for i := 2; len(list) < count; i++ {
		list = append(list, fmt.Sprintf("127.0.0.%d:%s", i, port))
	}
	return append(list, end)
}

// PolicySpellings are the next hops of #16.5 that a relay dialed, and the
// other special ranges it did not deny.
var PolicySpellings = []string{
	"[64:ff9b:1::a9fe:a9fe]:80",        // RFC 8215 local-use NAT64 of 169.254.169.254
	"[::a9fe:a9fe]:80",                 // IPv4-compatible
	"[::ffff:0:a9fe:a9fe]:80",          // SIIT
	"[fec0::1]:80",                     // site-local
	"[64:ff9b::a9fe:a9fe]:80",          // NAT64 well-known prefix
	"[2002:a9fe:a9fe::1]:80",           // 6to4
	"[2001:0:4136:e378::5601:5701]:80", // Teredo
	"[2a00:1::5efe:a9fe:a9fe]:80",      // ISATAP
	"192.0.0.8:80", "198.18.0.1:80", "192.0.2.1:80", "198.51.100.1:80", "203.0.113.1:80",
	"[2001:db8::1]:80", "[100::1]:80",
}

// SocketsOf counts the sockets process pid holds open now (Linux: the
// distinct sockets its descriptors point to). A socket counts once however
// many descriptors it has: a relay's handler duplicates the connection's
// descriptor for a moment while caddy-l4 still holds the first.
func SocketsOf(pid int) (int, error) {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fds)
	if err != nil {
		return 0, err
	}
	sockets := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fds, e.Name()))
		if err == nil && strings.HasPrefix(target, "socket:") {
			sockets[target] = true
		} else if err != nil && !errors.Is(err, syscall.ENOENT) { // ENOENT: closed while we looked
			return 0, err
		}
	}
	return len(sockets), nil
}

// ExamplePorts are the ports Caddyfile.example listens on.
var ExamplePorts = []string{"7000", "7001", "7002", "7003", "7100", "8000", "8080", "8081", "1080"}

// loopbackAddr is an address of 127.0.0.1 in a Caddyfile, its port whole.
var loopbackAddr = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

// SwapPorts moves every 127.0.0.1:<port> of text whose port is a key of
// ports to the port it maps to, in one pass over whole port numbers: a
// port an edit added, such as 10805, is not taken for the example's 1080
// followed by a 5, and a swapped-in port is never swapped again.
func SwapPorts(text string, ports map[string]string) string {
	return loopbackAddr.ReplaceAllStringFunc(text, func(addr string) string {
		if to, ok := ports[strings.TrimPrefix(addr, "127.0.0.1:")]; ok {
			return "127.0.0.1:" + to
		}
		return addr
	})
}

// Example is a Caddyfile.example text on free loopback ports instead of
// its fixed ones, with the admin endpoint off.
type Example struct {
	Caddyfile string
	ports     map[string]string
}

// NewExample rewrites text, a Caddyfile.example after any edits, onto the
// ports freePort gives: tests pass testkit.FreePort, whose ports no
// outgoing connection takes meanwhile (a port the kernel picked for a
// listener and that was closed again can be, before Caddy binds it).
func NewExample(text string, freePort func() string) (*Example, error) {
	e := &Example{ports: map[string]string{}}
	for _, p := range ExamplePorts {
		e.ports[p] = freePort()
	}
	text = SwapPorts(text, e.ports)
	// The global options block is the first line that is only "{".
	e.Caddyfile = strings.Replace(text, "\n{\n", "\n{\n\tadmin off\n", 1)
	if e.Caddyfile == text {
		return nil, errors.New("the example has no global options block")
	}
	return e, nil
}

// Addr is where the example's 127.0.0.1:<port> listens now.
func (e *Example) Addr(port string) string { return "127.0.0.1:" + e.ports[port] }

// Targets are the example's listeners that ProvokeLogs attacks.
func (e *Example) Targets() LogTargets {
	return LogTargets{
		Manager: e.Addr("7000"), Relay: e.Addr("7001"), Responder: e.Addr("7100"),
		Entrance: e.Addr("8000"), Proxy: e.Addr("1080"),
	}
}
