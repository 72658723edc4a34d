package gunshu

import (
	"net"
	"testing"
)

func TestCoverLocalAddr(t *testing.T) {
	cases := map[string]string{
		"127.0.0.19:7000": "127.0.0.19",
		"192.0.2.77:7000": "", // not an address of this machine: NAT decides
		"relay.test:7000": "", // a name: the module sets LocalAddr
		"0.0.0.0:7000":    "",
		"":                "",
		"no-port-here":    "",
	}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		cases["[::1]:7000"] = "::1"
	}
	for addr, want := range cases {
		got := coverLocalAddr(addr)
		switch {
		case want == "" && got != nil:
			t.Errorf("%q: bound to %v, want none", addr, got)
		case want != "" && (got == nil || got.IP.String() != want):
			t.Errorf("%q: bound to %v, want %s", addr, got, want)
		}
	}
}
