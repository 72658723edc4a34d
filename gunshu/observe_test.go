package gunshu

import (
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
