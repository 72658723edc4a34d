package gunshu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

func TestRedactedDropsSocketAddresses(t *testing.T) {
	read := &net.OpError{
		Op: "read", Net: "tcp",
		Source: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7001},
		Addr:   &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 50123},
		Err:    os.ErrDeadlineExceeded,
	}
	dial := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.ParseIP("2001:db8::5"), Port: 443}, Err: errors.New("connection refused")}
	err := errors.Join(fmt.Errorf("waiting for forward: %w", read), errDial{dial})

	got := RedactedError(err)
	for _, addr := range []string{"192.0.2.1", "198.51.100.7", "50123", "2001:db8::5"} {
		if strings.Contains(got, addr) {
			t.Errorf("redacted error %q still names %s", got, addr)
		}
	}
	for _, keep := range []string{"waiting for forward: read tcp: i/o timeout", "dialing next hop: dial tcp: connection refused"} {
		if !strings.Contains(got, keep) {
			t.Errorf("redacted error %q lost %q", got, keep)
		}
	}
}

// TestRedactedNamesNoAddress covers what the session lines of #16.4 wrote:
// policy refusals naming the next hop, DNS errors naming the destination
// and its resolver, list entries and bytes a peer sent.
func TestRedactedNamesNoAddress(t *testing.T) {
	var p Policy
	ctx := context.Background()
	_, denied := p.Resolve(ctx, "[::1]:7001")
	_, embedded := p.Resolve(ctx, "[64:ff9b::a9fe:a9fe]:80")
	_, mapped := p.Resolve(ctx, "[::ffff:10.1.2.3]:80")
	_, unresolved := p.Resolve(ctx, "no-such-host.invalid:7001")
	byName := Policy{Deny: []string{"secret.example.net"}}
	_, host := byName.Resolve(ctx, "secret.example.net:443")
	_, malformed := ParseAddr("evil.example.com:99999")
	cases := []error{
		denied, embedded, mapped, unresolved, host, malformed,
		fmt.Errorf("%w %.40q", ErrUnknown, "CONNECT dest.example.org:443 HTTP/1.1"),
		errors.New("waiting for ok: read tcp 127.0.0.1:7001->[2001:db8::7]:50123: connection reset by peer"),
		errors.New("fe80::1%eth0 and 10.0.0.1, then 192.0.2.1."),
	}
	for _, err := range cases {
		if err == nil {
			t.Fatal("a case did not fail")
		}
		got := RedactedError(err)
		for _, addr := range []string{"::1", "a9fe", "169.254", "10.1.2.3", "no-such-host", "secret.example",
			"dest.example", "127.0.0.1", "2001:db8", "50123", "fe80", "10.0.0.1", "192.0.2.1"} {
			if strings.Contains(got, addr) {
				t.Errorf("RedactedError(%q) = %q still names %s", err, got, addr)
			}
		}
		if !strings.Contains(got, Redacted) && !strings.Contains(got, "lookup:") {
			t.Errorf("RedactedError(%q) = %q marks no cut", err, got)
		}
	}
	// What is no address stays.
	for _, keep := range []string{"est: list entry 3 of 20: 1.5 s, 10:30:00, v0.1.2, i/o timeout", "denied by policy: port 25"} {
		if got := RedactText(keep); got != keep {
			t.Errorf("RedactText(%q) = %q", keep, got)
		}
	}
}
