package gunshu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// chunkReader returns at most size bytes per Read, so the fuzzers drive
// the line reader through every way a stream can be cut into segments.
type chunkReader struct {
	data []byte
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// FuzzLineReader compares the line reader with a plain model of the wire
// format on the whole input: the same lines, the same error, and not one
// byte lost or repeated in what release hands back.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("est\n2\n192.0.2.1:7001\nrelay.example.net:7001\nforward\nGET /"), uint16(0), uint16(1024), uint8(255), uint8(4))
	f.Add([]byte("test\r\n"), uint16(2), uint16(1024), uint8(0), uint8(1))
	f.Add([]byte(" \tok \r\r\n\nfail"), uint16(20), uint16(3), uint8(1), uint8(9))
	f.Add(bytes.Repeat([]byte("x"), 3000), uint16(2500), uint16(2047), uint8(7), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, prefixLen, maxLine uint16, chunk, lines uint8) {
		limit := 1 + int(maxLine)%4096
		split := int(prefixLen) % (len(data) + 1)
		src := &chunkReader{data: data[split:], size: 1 + int(chunk)}
		lr := newLineReader(src, data[:split], limit)
		pos := 0
		for range int(lines) {
			got, err := lr.readLine()
			want, next, wantErr := modelLine(data, pos, limit)
			if err != wantErr && !errors.Is(err, wantErr) {
				t.Fatalf("at %d: error %v, want %v", pos, err, wantErr)
			}
			if err != nil {
				lr.release()
				return
			}
			if got != want {
				t.Fatalf("at %d: line %q, want %q", pos, got, want)
			}
			if len(got) > limit || strings.ContainsRune(got, '\n') {
				t.Fatalf("line %q breaks the limit %d or holds a newline", got, limit)
			}
			pos = next
		}
		rest := lr.release()
		unread, _ := io.ReadAll(src)
		if got := append(rest, unread...); !bytes.Equal(got, data[pos:]) {
			t.Fatalf("after %d bytes of lines: rest+unread = %q, want %q", pos, got, data[pos:])
		}
	})
}

// modelLine is the wire format's next line at pos, as PROTOCOL.md states
// it, and the position after it.
func modelLine(data []byte, pos, limit int) (string, int, error) {
	i := bytes.IndexByte(data[pos:], '\n')
	if i < 0 {
		switch rest := len(data) - pos; {
		case rest > limit:
			return "", 0, ErrLineTooLong
		case rest > 0:
			return "", 0, io.ErrUnexpectedEOF
		}
		return "", 0, io.EOF
	}
	if i > limit {
		return "", 0, ErrLineTooLong
	}
	line := data[pos : pos+i]
	line = bytes.TrimSuffix(line, []byte("\r"))
	return strings.Trim(string(line), " \t"), pos + i + 1, nil
}

// FuzzReadList: any input yields a list of canonical addresses within
// the limit, or one of the codec's errors; an accepted list survives a
// round trip through the writer.
func FuzzReadList(f *testing.F) {
	f.Add([]byte("2\n192.0.2.1:7001\n[::1]:7001\n"), uint16(1024))
	f.Add([]byte("1\nRelay.Example.NET:07001\r\n"), uint16(1))
	f.Add([]byte("3\n192.0.2.1:7001\n"), uint16(1024))
	f.Add([]byte("-1\n"), uint16(1024))
	f.Add([]byte("99999999999999999999\n"), uint16(1024))
	f.Add([]byte("0\n"), uint16(0))
	f.Add([]byte("1\n[fe80::1%eth0]:1\n"), uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		max := int(limit) % 2048
		lr := newLineReader(bytes.NewReader(data), nil, DefaultMaxLine)
		list, err := lr.readList(max)
		lr.release()
		if err != nil {
			for _, known := range []error{ErrBadCount, ErrCountTooLarge, ErrBadAddress, ErrLineTooLong, io.EOF, io.ErrUnexpectedEOF} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unexpected error kind: %v", err)
		}
		if len(list) > max {
			t.Fatalf("%d entries over the limit %d", len(list), max)
		}
		for _, a := range list {
			if c, err := ParseAddr(a); err != nil || c != a {
				t.Fatalf("entry %q is not canonical: %q, %v", a, c, err)
			}
		}
		again := newLineReader(bytes.NewReader(appendList(nil, list)), nil, DefaultMaxLine)
		defer again.release()
		round, err := again.readList(max)
		if err != nil || strings.Join(round, "\n") != strings.Join(list, "\n") {
			t.Fatalf("round trip of %q: %q, %v", list, round, err)
		}
	})
}

// FuzzParseAddr: an accepted address is canonical (parsing it again
// gives it back), is safe to put on a line, and is what the dial policy
// understands; a refused one is ErrBadAddress.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:7001", "[::1]:7001", "Relay.Example.NET:07001", "relay.example.net.:1",
		"[::ffff:192.0.2.1]:80", "::1:7001", "[fe80::1%eth0]:1", "1.2.3.4.5:1", "a:65535",
		"0x7f000001:80", "[1.2.3.4]:1", "host:+1", "_srv.example:1", "",
	} {
		f.Add(s)
	}
	open := &Policy{Allow: []string{"0.0.0.0/0", "::/0"}, DenyPorts: []uint16{}}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseAddr(s)
		if err != nil {
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("ParseAddr(%q): %v is not ErrBadAddress", s, err)
			}
			return
		}
		if again, err := ParseAddr(out); err != nil || again != out {
			t.Fatalf("ParseAddr(%q) = %q, which parses to %q, %v", s, out, again, err)
		}
		if strings.ContainsFunc(out, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("ParseAddr(%q) = %q holds blanks or control bytes", s, out)
		}
		host, port, err := net.SplitHostPort(out)
		if err != nil {
			t.Fatalf("ParseAddr(%q) = %q, which SplitHostPort refuses: %v", s, out, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
			t.Fatalf("ParseAddr(%q) = %q: port %q", s, out, port)
		}
		if ip := net.ParseIP(host); ip != nil {
			if _, err := open.Resolve(context.Background(), out); err != nil {
				t.Fatalf("ParseAddr(%q) = %q, which the policy refuses: %v", s, out, err)
			}
		}
	})
}
