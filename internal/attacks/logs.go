package attacks

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// LogTargets are the listeners of a network built like Caddyfile.example:
// a manager and a relay behind the gunshu matcher, a responder, a fixed
// entrance and a proxy entrance.
type LogTargets struct {
	Manager, Relay, Responder, Entrance, Proxy string
}

// Secret destinations: addresses and names that only the attack uses, so
// any log line naming one names what a client asked for.
const (
	secretIP   = "10.99.88.77"
	secretIP2  = "10.99.88.76"
	secretName = "secret-dest.invalid"
)

// ProvokeLogs makes every role, and caddy-l4 around them, write the lines
// that named addresses in #16.4: clients too slow to be matched
// (slowloris), clients leaving or resetting during matching, lists naming
// hosts a relay refuses, sessions through both entrances, proxy requests
// naming destinations, and a responder session. Each client connects from
// a loopback address of its own (127.0.0.71 and up). It returns every
// string that no log line may hold: those sources and destinations.
func ProvokeLogs(t LogTargets) []string {
	sources := []string{}
	next := 70
	from := func() *net.Dialer {
		next++
		ip := fmt.Sprintf("127.0.0.%d", next)
		sources = append(sources, ip)
		return From(ip)
	}
	var wg sync.WaitGroup
	run := func(f func()) { wg.Go(f) }

	// Slow clients (a command begun and never finished, until the
	// matcher gives up: caddy-l4 waits 3 s), clients that leave during
	// matching (FIN), and clients that reset. The partial commands are
	// ones the matcher of each listener may still accept.
	for addr, partial := range map[string]string{t.Manager: "re", t.Relay: "te"} {
		slow, fin, reset := from(), from(), from()
		run(func() { holdOpen(slow, addr, partial, 15*time.Second) })
		run(func() { finAfter(fin, addr, partial) })
		run(func() { resetAfter(reset, addr, partial) })
	}
	// Lists a relay refuses, naming destinations.
	for _, list := range []string{
		"est\n1\n" + secretIP + ":80\n",
		"est\n2\n[::ffff:" + secretIP2 + "]:443\n" + secretName + ":443\n",
		"est\n1\n[64:ff9b::a9fe:a9fe]:80\n",
		"CONNECT " + secretName + ":443 HTTP/1.1\r\n\r\n",
	} {
		d := from()
		run(func() { _, _ = Exchange(d, t.Relay, list) })
	}
	// Sessions through the fixed entrance, one completed, one cut.
	whole, cut := from(), from()
	run(func() { _, _ = Exchange(whole, t.Entrance, "GET / HTTP/1.0\r\n\r\n") })
	run(func() { resetAfter(cut, t.Entrance, "GET / HTTP/1.0\r\n") })
	// The proxy entrance: SOCKS5 to an IP, HTTP to a name.
	socks, proxy := from(), from()
	run(func() {
		req := []byte{5, 1, 0, 5, 1, 0, 1, 10, 99, 88, 77, 0, 80}
		_, _ = Exchange(socks, t.Proxy, string(req))
	})
	run(func() {
		_, _ = Exchange(proxy, t.Proxy, "GET http://"+secretName+":8080/x HTTP/1.1\r\nHost: "+secretName+":8080\r\n\r\n")
	})
	// A responder session straight from a "relay".
	last := from()
	run(func() { _, _ = Exchange(last, t.Responder, "est\n0\nforward\nGET / HTTP/1.0\r\n\r\n") })
	wg.Wait()
	return append(sources, secretIP, secretIP2, "a9fe", "169.254", secretName)
}

// holdOpen writes a partial line and waits, at most wait, for the server
// to give up.
func holdOpen(d *net.Dialer, addr, partial string, wait time.Duration) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.WriteString(c, partial)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, _ = io.Copy(io.Discard, c)
}

// finAfter writes partial, shuts its side down and waits, at most 10 s,
// for the server to close.
func finAfter(d *net.Dialer, addr, partial string) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.WriteString(c, partial)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, c)
}

// resetAfter writes partial and resets the connection.
func resetAfter(d *net.Dialer, addr, partial string) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return
	}
	_, _ = io.WriteString(c, partial)
	time.Sleep(50 * time.Millisecond) // let the server start reading
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// LinesNaming returns the lines of log that hold any of secrets.
func LinesNaming(log string, secrets []string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		for _, s := range secrets {
			if strings.Contains(line, s) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}
