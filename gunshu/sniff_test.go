package gunshu

import "testing"

func TestSniffCommand(t *testing.T) {
	cases := []struct {
		in       string
		commands []string
		cmd      string
		want     Sniff
	}{
		{"", nil, "", SniffMore},
		{"e", nil, "", SniffMore},
		{"es", nil, "", SniffMore},
		{"est", nil, "", SniffMore},
		{"est\n", nil, "est", SniffYes},
		{"est\r\n2\n", nil, "est", SniffYes},
		{"  test \t\r\n", nil, "test", SniffYes},
		{"list \r", nil, "", SniffMore},
		{"reg\nexample.net:7001\n", nil, "reg", SniffYes},
		{"G", nil, "", SniffNo},
		{"GET / HTTP/1.1\r\n", nil, "", SniffNo},
		{"\x16\x03\x01", nil, "", SniffNo},
		{"esta\n", nil, "", SniffNo},
		{"est x\n", nil, "", SniffNo},
		{"est\r\r\n", nil, "", SniffNo},
		{"forward\n", nil, "", SniffNo},
		{"test\n", []string{"est"}, "", SniffNo},
		{"te", []string{"est", "test"}, "", SniffMore},
		{"est\n", []string{"est", "test"}, "est", SniffYes},
	}
	for _, c := range cases {
		cmd, got := SniffCommand([]byte(c.in), c.commands)
		if got != c.want || cmd != c.cmd {
			t.Errorf("SniffCommand(%q, %v) = %q, %v; want %q, %v", c.in, c.commands, cmd, got, c.cmd, c.want)
		}
	}
}

func TestSniffCommandBoundsBlanks(t *testing.T) {
	long := make([]byte, DefaultMaxLine+2)
	for i := range long {
		long[i] = ' '
	}
	if _, got := SniffCommand(long, nil); got != SniffNo {
		t.Fatalf("a line of %d blanks: %v, want SniffNo", len(long), got)
	}
	trailing := append([]byte("est"), long...)
	if _, got := SniffCommand(trailing, nil); got != SniffNo {
		t.Fatalf("est and %d blanks: %v, want SniffNo", len(long), got)
	}
}

// TestSniffRouteCommands: what a shared port (Responder.ListenShared) takes
// for Gunshu's is what SniffCommand says of est and test, the rule the
// gunshu matcher follows too.
func TestSniffRouteCommands(t *testing.T) {
	tests := []struct {
		in   string
		want Sniff
	}{
		{"", SniffMore},
		{"e", SniffMore},
		{"est", SniffMore},
		{"est\r", SniffMore},
		{"est\n", SniffYes},
		{"est\r\n3\n", SniffYes},
		{"test\n", SniffYes},
		{"tes", SniffMore},
		{"GET / HTTP/1.1", SniffNo},
		{"\x16\x03\x01", SniffNo},
		{"estate", SniffNo},
		{"test \n", SniffYes},
		{"PRI * HTTP/2.0", SniffNo},
		{"list\n", SniffNo},
	}
	for _, tt := range tests {
		if _, got := SniffCommand([]byte(tt.in), routeCommands); got != tt.want {
			t.Errorf("SniffCommand(%q, est and test) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
