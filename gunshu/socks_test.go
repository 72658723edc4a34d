package gunshu

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func socksRead(input []byte, creds *credentials) (*proxyRequest, []byte, error) {
	var out bytes.Buffer
	req, err := readSOCKS5(bufio.NewReader(bytes.NewReader(input)), &out, creds)
	return req, out.Bytes(), err
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var (
	socksHelloNoAuth   = []byte{5, 1, 0}
	socksHelloUserPass = []byte{5, 2, 0, 2}
	socksSelectNoAuth  = []byte{5, 0}
	socksSelectUser    = []byte{5, 2}
	socksNoMethod      = []byte{5, 0xff}
)

func socksConnectDomain(name string, port uint16) []byte {
	return cat([]byte{5, 1, 0, 3, byte(len(name))}, []byte(name), []byte{byte(port >> 8), byte(port)})
}

func socksUserPass(user, pass string) []byte {
	return cat([]byte{1, byte(len(user))}, []byte(user), []byte{byte(len(pass))}, []byte(pass))
}

func socksReply(code byte) []byte { return []byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0} }

func TestSOCKS5Requests(t *testing.T) {
	creds := newCredentials("alice", "s3cret")
	tests := []struct {
		name   string
		input  []byte
		creds  *credentials
		target string
		reply  []byte // what the server wrote
		err    error
	}{
		{"domain", cat(socksHelloNoAuth, socksConnectDomain("Example.NET", 8080)), nil,
			"example.net:8080", socksSelectNoAuth, nil},
		{"ipv4", cat(socksHelloNoAuth, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0x1b, 0xbc}), nil,
			"127.0.0.1:7100", socksSelectNoAuth, nil},
		{"ipv6", cat(socksHelloNoAuth, []byte{5, 1, 0, 4}, make([]byte, 15), []byte{1, 0, 80}), nil,
			"[::1]:80", socksSelectNoAuth, nil},
		{"user/pass accepted", cat(socksHelloUserPass, socksUserPass("alice", "s3cret"), socksConnectDomain("a.example", 443)), creds,
			"a.example:443", cat(socksSelectUser, []byte{1, 0}), nil},
		{"wrong password", cat(socksHelloUserPass, socksUserPass("alice", "guess"), socksConnectDomain("a.example", 443)), creds,
			"", cat(socksSelectUser, []byte{1, 1}), ErrProxyAuth},
		{"empty credentials", cat(socksHelloUserPass, socksUserPass("", ""), socksConnectDomain("a.example", 443)), creds,
			"", cat(socksSelectUser, []byte{1, 1}), ErrProxyAuth},
		{"client offers no user/pass", cat(socksHelloNoAuth, socksConnectDomain("a.example", 443)), creds,
			"", socksNoMethod, ErrProxyAuth},
		{"client offers only user/pass", cat([]byte{5, 1, 2}, socksConnectDomain("a.example", 443)), nil,
			"", socksNoMethod, ErrProxyRequest},
		{"bind", cat(socksHelloNoAuth, []byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80}), nil,
			"", cat(socksSelectNoAuth, socksReply(socksCommandUnsupported)), ErrProxyCommand},
		{"udp associate", cat(socksHelloNoAuth, []byte{5, 3, 0, 1, 127, 0, 0, 1, 0, 80}), nil,
			"", cat(socksSelectNoAuth, socksReply(socksCommandUnsupported)), ErrProxyCommand},
		{"unknown address type", cat(socksHelloNoAuth, []byte{5, 1, 0, 9, 1, 2}), nil,
			"", cat(socksSelectNoAuth, socksReply(socksAddrUnsupported)), ErrProxyRequest},
		{"port zero", cat(socksHelloNoAuth, socksConnectDomain("a.example", 0)), nil,
			"", cat(socksSelectNoAuth, socksReply(socksGeneralFailure)), ErrBadAddress},
		{"bad domain", cat(socksHelloNoAuth, socksConnectDomain("a b\n", 80)), nil,
			"", cat(socksSelectNoAuth, socksReply(socksGeneralFailure)), ErrBadAddress},
		{"request version 4", cat(socksHelloNoAuth, []byte{4, 1, 0, 1, 127, 0, 0, 1, 0, 80}), nil,
			"", cat(socksSelectNoAuth, socksReply(socksGeneralFailure)), ErrProxyRequest},
		{"truncated greeting", []byte{5, 3, 0}, nil, "", nil, errTruncated},
		{"truncated request", cat(socksHelloNoAuth, []byte{5, 1, 0, 3, 20, 'a'}), nil,
			"", socksSelectNoAuth, errTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, out, err := socksRead(tt.input, tt.creds)
			if !bytes.Equal(out, tt.reply) {
				t.Errorf("server wrote %v, want %v", out, tt.reply)
			}
			if tt.err == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if req.target != tt.target || req.kind != proxySOCKS5 {
					t.Fatalf("got target %q kind %d, want %q", req.target, req.kind, tt.target)
				}
				return
			}
			if !isErr(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
		})
	}
}

// errTruncated stands for the io errors of a stream that ends early.
var errTruncated = errors.New("truncated")

func isErr(err, want error) bool {
	if want == errTruncated {
		return err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF))
	}
	return errors.Is(err, want)
}

func TestSOCKS5ReplyCodes(t *testing.T) {
	tests := []struct {
		err  error
		code byte
	}{
		{nil, socksSucceeded},
		{ErrNoRelays, socksGeneralFailure},
		{errDial{ErrPolicyDenied}, socksNotAllowed},
		{errDial{errors.New("connection refused")}, socksHostUnreachable},
	}
	for _, tt := range tests {
		if got := socksReplyFor(tt.err); got != tt.code {
			t.Errorf("socksReplyFor(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}

// FuzzSOCKS5 feeds arbitrary client bytes to the SOCKS5 handshake: it must
// end without panic, and a request it accepts names a canonical address.
func FuzzSOCKS5(f *testing.F) {
	f.Add(cat(socksHelloNoAuth, socksConnectDomain("example.net", 80)), false)
	f.Add(cat(socksHelloUserPass, socksUserPass("alice", "s3cret"), []byte{5, 1, 0, 1, 10, 0, 0, 1, 0, 80}), true)
	f.Add(cat(socksHelloNoAuth, []byte{5, 1, 0, 4}, make([]byte, 18)), false)
	f.Add([]byte{5, 255}, true)
	creds := newCredentials("alice", "s3cret")
	f.Fuzz(func(t *testing.T, input []byte, auth bool) {
		c := creds
		if !auth {
			c = nil
		}
		req, _, err := socksRead(input, c)
		if err != nil {
			return
		}
		if canon, perr := ParseAddr(req.target); perr != nil || canon != req.target {
			t.Fatalf("accepted target %q is not canonical (%v)", req.target, perr)
		}
	})
}
