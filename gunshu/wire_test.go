package gunshu

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseAddr(t *testing.T) {
	good := map[string]string{
		"127.0.0.1:7001":          "127.0.0.1:7001",
		"192.0.2.1:07001":         "192.0.2.1:7001",
		"[::1]:7001":              "[::1]:7001",
		"[2001:DB8::0001]:443":    "[2001:db8::1]:443",
		"[::ffff:192.0.2.1]:80":   "192.0.2.1:80",
		"Relay.Example.NET:7001":  "relay.example.net:7001",
		"relay.example.net.:7001": "relay.example.net.:7001",
		"localhost:1":             "localhost:1",
		"a-b_c.example:65535":     "a-b_c.example:65535",
		"xn--bcher-kva.example:1": "xn--bcher-kva.example:1",
	}
	for in, want := range good {
		got, err := ParseAddr(in)
		if err != nil || got != want {
			t.Errorf("ParseAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", ":", "127.0.0.1", "127.0.0.1:", ":7001", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1: 1", "127.0.0.1:0x1f", "::1:7001",
		"[127.0.0.1]:7001", "[fe80::1%eth0]:7001", "[relay.example.net]:7001",
		"relay example.net:7001", "-relay.example.net:7001", "relay-.example.net:7001",
		"relay..example.net:7001", "1.2.3.4.5:7001", "256.1.1.1:7001", "1.2.3:7001",
		"http://relay:7001", "relay:7001/", "relay:7001\n", "re\x00lay:1",
		strings.Repeat("a", 64) + ".net:1", strings.Repeat("a.", 127) + "net:1",
	}
	for _, in := range bad {
		if got, err := ParseAddr(in); !errors.Is(err, ErrBadAddress) {
			t.Errorf("ParseAddr(%q) = %q, %v; want ErrBadAddress", in, got, err)
		}
	}
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1": 1, "007": 7, "1024": 1024} {
		if got, err := ParseCount(in, 1024); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]error{
		"": ErrBadCount, "-1": ErrBadCount, "+1": ErrBadCount, "1 2": ErrBadCount, "x": ErrBadCount,
		"1e3": ErrBadCount, "1025": ErrCountTooLarge, "9999999999": ErrCountTooLarge,
		"99999999999999999999": ErrCountTooLarge, "-99999999999": ErrBadCount,
	} {
		if _, err := ParseCount(in, 1024); !errors.Is(err, want) {
			t.Errorf("ParseCount(%q) = %v, want %v", in, err, want)
		}
	}
}

func TestLineReader(t *testing.T) {
	in := "est\r\n  2 \t\n" + strings.Repeat("x", DefaultMaxLine) + "\nlast"
	for name, src := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
		"half":     iotest.HalfReader(strings.NewReader(in)),
	} {
		lr := newLineReader(src, nil, DefaultMaxLine)
		for _, want := range []string{"est", "2", strings.Repeat("x", DefaultMaxLine)} {
			if got, err := lr.readLine(); err != nil || got != want {
				t.Fatalf("%s: got %.20q, %v; want %.20q", name, got, err, want)
			}
		}
		if _, err := lr.readLine(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: unterminated last line: %v", name, err)
		}
		lr.release()
	}
	lr := newLineReader(strings.NewReader(strings.Repeat("y", DefaultMaxLine+1)+"\n"), nil, DefaultMaxLine)
	if _, err := lr.readLine(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("line of maxLine+1: %v", err)
	}
	lr.release()
	lr = newLineReader(strings.NewReader(""), nil, DefaultMaxLine)
	if _, err := lr.readLine(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	lr.release()
}

// TestLineReaderPrefixAndRest: bytes a matcher read first come first, and
// what was read past the last line is handed back by release.
func TestLineReaderPrefixAndRest(t *testing.T) {
	prefix := []byte("est\n1\n192.0.2")
	lr := newLineReader(strings.NewReader(".1:7001\nforward\nGET / HTTP/1.0\r\n"), prefix, DefaultMaxLine)
	list, err := func() ([]string, error) {
		if line, err := lr.readLine(); err != nil || line != "est" {
			return nil, errors.New("command: " + line)
		}
		return lr.readList(DefaultMaxList)
	}()
	if err != nil || len(list) != 1 || list[0] != "192.0.2.1:7001" {
		t.Fatalf("list %q, %v", list, err)
	}
	if err := lr.expectLine(CmdForward); err != nil {
		t.Fatal(err)
	}
	if rest := string(lr.release()); rest != "GET / HTTP/1.0\r\n" {
		t.Fatalf("rest %q", rest)
	}
	// A prefix larger than the pooled buffer works too.
	big := strings.Repeat("line\n", 1000)
	lr = newLineReader(strings.NewReader("tail\n"), []byte(big), DefaultMaxLine)
	for i := range 1001 {
		line, err := lr.readLine()
		if err != nil || (i < 1000 && line != "line") || (i == 1000 && line != "tail") {
			t.Fatalf("line %d: %q, %v", i, line, err)
		}
	}
	lr.release()
}

func TestReadListRoundTrip(t *testing.T) {
	list := []string{"192.0.2.1:7001", "[2001:db8::1]:7001", "relay.example.net:7001"}
	msg := estMessage(list)
	if want := "est\n3\n192.0.2.1:7001\n[2001:db8::1]:7001\nrelay.example.net:7001\n"; string(msg) != want {
		t.Fatalf("estMessage = %q, want %q", msg, want)
	}
	lr := newLineReader(strings.NewReader(string(msg)), nil, DefaultMaxLine)
	defer lr.release()
	if cmd, _ := lr.readLine(); cmd != CmdEst {
		t.Fatalf("command %q", cmd)
	}
	got, err := lr.readList(DefaultMaxList)
	if err != nil || strings.Join(got, ",") != strings.Join(list, ",") {
		t.Fatalf("got %q, %v", got, err)
	}
	if string(regMessage("192.0.2.1:7001")) != "reg\n192.0.2.1:7001\n" {
		t.Fatal("regMessage")
	}
}

func TestExpectLine(t *testing.T) {
	for in, want := range map[string]error{"ok\n": nil, "fail\n": ErrFailed, "okay\n": ErrUnexpected, "ok": io.ErrUnexpectedEOF} {
		lr := newLineReader(strings.NewReader(in), nil, DefaultMaxLine)
		if err := lr.expectLine(ReplyOK); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("expectLine(ok) on %q = %v, want %v", in, err, want)
		}
		lr.release()
	}
}
