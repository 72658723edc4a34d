package testkit

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// FreePort returns a port of 127.0.0.1 that was free a moment ago, for a
// server the test configures but does not start itself (Caddy's, another
// process's). The port is the test's until it ends: no other FreePort
// hands it out meanwhile, in this test process or another (go test runs
// packages as parallel processes).
func FreePort(t testing.TB) string {
	t.Helper()
	return FreePortWith(t)
}

// FreePortWith is FreePort for a server that also listens offset ports
// above its own (a Redis Cluster node's bus, 10000 above): those were
// free and are claimed too. The port is drawn below the kernel's
// ephemeral range, from which outgoing connections take their local
// ports: on a busy machine an ephemeral port is soon some connection's,
// before the server that is to listen on it has started.
func FreePortWith(t testing.TB, offsets ...int) string {
	t.Helper()
	top := ephemeralLow() - 1
	for _, o := range offsets {
		top = min(top, 65535-o)
	}
	ports := make([]int, 1+len(offsets))
	for range 1000 {
		ports[0] = firstFreePort + rand.IntN(top-firstFreePort+1)
		for i, o := range offsets {
			ports[i+1] = ports[0] + o
		}
		if release, ok := claimFree(t, ports); ok {
			t.Cleanup(release)
			return strconv.Itoa(ports[0])
		}
	}
	t.Fatalf("no free port between %d and %d", firstFreePort, top)
	return ""
}

// firstFreePort is the lowest port FreePort returns: above the ports
// well-known services use.
const firstFreePort = 10000

// claimFree claims every one of ports and checks that each is free; if
// one is taken, it releases what it claimed.
func claimFree(t testing.TB, ports []int) (release func(), ok bool) {
	var releases []func()
	release = func() {
		for _, r := range releases {
			r()
		}
	}
	for _, port := range ports {
		r, err := claimPort(port)
		if err != nil {
			release()
			t.Fatalf("claiming port %d: %v", port, err)
		}
		if r == nil || !portFree(port) {
			if r != nil {
				r()
			}
			release()
			return nil, false
		}
		releases = append(releases, r)
	}
	return release, true
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > firstFreePort+1000 {
				return low
			}
		}
	}
	return 32768
}

// FreeAddr is 127.0.0.1 with a FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + FreePort(t)
}

// ClosedAddr is an address of 127.0.0.1 where nothing listens: a dial to
// it is refused. It is a FreePort: below the range the kernel gives
// listeners on port 0, and claimed, so no other test starts a server on
// it meanwhile.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	return FreeAddr(t)
}

// ListenSamePort returns listeners on one port of each of ips (such as
// 127.0.0.1, 127.0.0.2 and ::1), in their order, closed when the test
// ends: for tests of which of two addresses a dial reaches. The port is
// the kernel's pick for the first IP; when another IP has it in use
// already (an outgoing connection's local port, say), it tries a new pick.
func ListenSamePort(t testing.TB, ips ...string) []net.Listener {
	t.Helper()
	for range 100 {
		lns, err := listenSamePort(ips)
		if err == nil {
			for _, ln := range lns {
				t.Cleanup(func() { ln.Close() })
			}
			return lns
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
	t.Fatalf("no port free on all of %v in 100 picks", ips)
	return nil
}

func listenSamePort(ips []string) ([]net.Listener, error) {
	port := "0"
	var lns []net.Listener
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		_, port, _ = net.SplitHostPort(ln.Addr().String())
	}
	return lns, nil
}
