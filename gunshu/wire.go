package gunshu

// The wire codec: bounded line reading, counts, addresses and lists, and
// the writers for every message. PROTOCOL.md has the normative text.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// Commands and replies of the protocol.
const (
	CmdReg     = "reg"
	CmdTest    = "test"
	CmdList    = "list"
	CmdEst     = "est"
	CmdForward = "forward"

	ReplyOK   = "ok"
	ReplyFail = "fail"
)

// Default limits from PROTOCOL.md's decisions.
const (
	DefaultMaxLine = 1024
	DefaultMaxList = 1024
)

// Errors of the codec. They are wrapped with detail; test with errors.Is.
var (
	ErrLineTooLong   = errors.New("line too long")
	ErrBadCount      = errors.New("malformed count")
	ErrCountTooLarge = errors.New("count over the limit")
	ErrBadAddress    = errors.New("malformed address")
	ErrUnknown       = errors.New("unknown command")
	ErrUnexpected    = errors.New("unexpected line")
	ErrFailed        = errors.New("peer answered fail")
)

var (
	okLine      = []byte("ok\n")
	failLine    = []byte("fail\n")
	testLine    = []byte("test\n")
	listLine    = []byte("list\n")
	forwardLine = []byte("forward\n")
)

// MessageLimits bounds what a peer may send. Zero fields take the defaults.
type MessageLimits struct {
	// MaxLine is the longest accepted line in bytes, without its newline.
	MaxLine int
	// MaxList is the largest accepted count in est and list.
	MaxList int
}

func (l MessageLimits) maxLine() int {
	if l.MaxLine <= 0 {
		return DefaultMaxLine
	}
	return l.MaxLine
}

func (l MessageLimits) maxList() int {
	if l.MaxList <= 0 {
		return DefaultMaxList
	}
	return l.MaxList
}

// lineReader reads bounded lines from a connection. Its buffer comes from a
// pool and goes back with release, so an established session holds none:
// whatever the reader had buffered past the handshake is handed out by
// rest first.
type lineReader struct {
	src     io.Reader
	buf     *[]byte
	r, w    int
	maxLine int
}

const readerBufSize = 2048

var readerPool = sync.Pool{New: func() any { b := make([]byte, readerBufSize); return &b }}

// newLineReader reads from src; prefix holds bytes that were read from src
// before (by a matcher, say) and come first.
func newLineReader(src io.Reader, prefix []byte, maxLine int) *lineReader {
	lr := &lineReader{src: src, maxLine: maxLine}
	lr.buf = readerPool.Get().(*[]byte)
	if need := max(maxLine+1, len(prefix)); need > len(*lr.buf) {
		b := make([]byte, need)
		lr.buf = &b
	}
	lr.w = copy(*lr.buf, prefix)
	return lr
}

// readLine returns the next line without its "\n", one trailing "\r" and
// surrounding blanks. A line longer than maxLine is ErrLineTooLong; a
// stream that ends inside a line is io.ErrUnexpectedEOF.
func (lr *lineReader) readLine() (string, error) {
	raw, err := lr.readRawLine()
	if err != nil {
		return "", err
	}
	return trimLine(raw[:len(raw)-1]), nil
}

// readRawLine is readLine that returns the line as received, newline
// included, for a hop that passes it on unchanged. The slice is valid
// until the next read or release.
func (lr *lineReader) readRawLine() ([]byte, error) {
	buf := *lr.buf
	scanned := lr.r
	for {
		if i := indexNewline(buf[scanned:lr.w]); i >= 0 {
			end := scanned + i
			if end-lr.r > lr.maxLine {
				return nil, ErrLineTooLong
			}
			line := buf[lr.r : end+1]
			lr.r = end + 1
			return line, nil
		}
		scanned = lr.w
		if lr.w-lr.r > lr.maxLine {
			return nil, ErrLineTooLong
		}
		if lr.w == len(buf) { // make room at the front
			lr.w = copy(buf, buf[lr.r:lr.w])
			scanned -= lr.r
			lr.r = 0
		}
		n, err := lr.src.Read(buf[lr.w:])
		lr.w += n
		if err != nil && n == 0 {
			if err == io.EOF {
				if lr.w > lr.r {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, io.EOF
			}
			return nil, err
		}
	}
}

// hasLine reports whether a whole line is buffered, so readLine would
// return without reading.
func (lr *lineReader) hasLine() bool {
	return indexNewline((*lr.buf)[lr.r:lr.w]) >= 0
}

// held is what the reader buffered past the last line, without copying.
// The slice is valid until the next read or release.
func (lr *lineReader) held() []byte { return (*lr.buf)[lr.r:lr.w] }

func indexNewline(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func trimLine(b []byte) string {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return strings.Trim(string(b), " \t")
}

// release returns a copy of the bytes read past the last line and gives
// the buffer back to the pool. The reader must not be used afterwards.
func (lr *lineReader) release() []byte {
	var rest []byte
	if lr.w > lr.r {
		rest = append([]byte(nil), (*lr.buf)[lr.r:lr.w]...)
	}
	lr.drop()
	return rest
}

// drop gives the buffer back to the pool, once; what it held is lost.
func (lr *lineReader) drop() {
	if lr.buf == nil {
		return
	}
	if cap(*lr.buf) == readerBufSize {
		readerPool.Put(lr.buf)
	}
	lr.buf = nil
}

// readEstReply reads the answer to est from conn: it returns every byte
// read, the reply line as received and whatever followed it, and the
// length of the line. A fail line is ErrFailed, any other line but ok
// ErrUnexpected.
func readEstReply(conn net.Conn, maxLine int) ([]byte, int, error) {
	lr := newLineReader(conn, nil, maxLine)
	defer lr.drop()
	raw, err := lr.readRawLine()
	if err != nil {
		return nil, 0, err
	}
	switch trimLine(raw[:len(raw)-1]) {
	case ReplyOK:
	case ReplyFail:
		return nil, 0, ErrFailed
	default:
		return nil, 0, fmt.Errorf("%w: want %q, got %.40q", ErrUnexpected, ReplyOK, raw)
	}
	whole := make([]byte, 0, len(raw)+len(lr.held()))
	return append(append(whole, raw...), lr.held()...), len(raw), nil
}

// readCount reads a count line: an unsigned decimal no larger than limit.
func (lr *lineReader) readCount(limit int) (int, error) {
	line, err := lr.readLine()
	if err != nil {
		return 0, err
	}
	return ParseCount(line, limit)
}

// ParseCount parses an unsigned decimal count no larger than limit.
func ParseCount(s string, limit int) (int, error) {
	if s == "" || len(s) > 10 {
		if len(s) > 10 && strings.Trim(s, "0123456789") == "" {
			return 0, fmt.Errorf("%w: %.12s… (limit %d)", ErrCountTooLarge, s, limit)
		}
		return 0, fmt.Errorf("%w: %q", ErrBadCount, s)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q", ErrBadCount, s)
		}
		n = n*10 + int(c-'0')
	}
	if n > limit {
		return 0, fmt.Errorf("%w: %d (limit %d)", ErrCountTooLarge, n, limit)
	}
	return n, nil
}

// readList reads a count and that many addresses.
func (lr *lineReader) readList(limit int) ([]string, error) {
	n, err := lr.readCount(limit)
	if err != nil {
		return nil, fmt.Errorf("reading list count: %w", err)
	}
	list := make([]string, 0, n)
	for range n {
		line, err := lr.readLine()
		if err != nil {
			return nil, fmt.Errorf("reading list entry %d of %d: %w", len(list)+1, n, err)
		}
		addr, err := ParseAddr(line)
		if err != nil {
			return nil, fmt.Errorf("list entry %d: %w", len(list)+1, err)
		}
		list = append(list, addr)
	}
	return list, nil
}

// expectLine reads one line and fails unless it is want. A "fail" line is
// ErrFailed.
func (lr *lineReader) expectLine(want string) error {
	line, err := lr.readLine()
	if err != nil {
		return err
	}
	switch line {
	case want:
		return nil
	case ReplyFail:
		return ErrFailed
	}
	return fmt.Errorf("%w: want %q, got %.40q", ErrUnexpected, want, line)
}

// ParseAddr validates host:port and returns it in canonical form: an IPv4
// address (IPv4-mapped IPv6 included), a lower-case DNS name, or a
// bracketed IPv6 address, then a port in 1..65535 without leading zeros.
func ParseAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%w: %.80q", ErrBadAddress, s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || port[0] < '0' || port[0] > '9' {
		return "", fmt.Errorf("%w: bad port in %.80q", ErrBadAddress, s)
	}
	bracketed := strings.HasPrefix(s, "[")
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("%w: zoned address %.80q", ErrBadAddress, s)
		}
		if ip.Is6() != bracketed {
			return "", fmt.Errorf("%w: IPv6 needs brackets, IPv4 none: %.80q", ErrBadAddress, s)
		}
		// An IPv4-mapped address is its IPv4 address: one spelling per
		// destination keeps duplicate and self checks on lists sound.
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)).String(), nil
	}
	if bracketed || !isDNSName(host) {
		return "", fmt.Errorf("%w: bad host in %.80q", ErrBadAddress, s)
	}
	return strings.ToLower(host) + ":" + strconv.FormatUint(p, 10), nil
}

// isDNSName reports whether s is a syntactically valid DNS host name:
// labels of letters, digits and inner hyphens (underscores tolerated), at
// most 63 bytes each, 253 in all, and a top label that is not a number.
// A number there ("2130706433", "0x7f000001", "127.1") is how inet_aton and
// URL parsers spell an IPv4 address: a resolver that accepts such spellings
// would dial 127.0.0.1 for a "name", so they are refused as malformed.
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return !isNumber(labels[len(labels)-1])
}

// isNumber reports whether label reads as a number in an IPv4 spelling:
// decimal (octal with a leading 0 included) or hexadecimal with 0x.
func isNumber(label string) bool {
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		return strings.Trim(label[2:], "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(label, "0123456789") == ""
}

// appendList appends "<n>\n" and one address line each.
func appendList(b []byte, list []string) []byte {
	b = strconv.AppendInt(b, int64(len(list)), 10)
	b = append(b, '\n')
	for _, a := range list {
		b = append(b, a...)
		b = append(b, '\n')
	}
	return b
}

// estMessage is the whole est request for list, in one buffer so it goes
// out in one write.
func estMessage(list []string) []byte {
	size := 8
	for _, a := range list {
		size += len(a) + 1
	}
	b := make([]byte, 0, size+12)
	b = append(b, CmdEst...)
	b = append(b, '\n')
	return appendList(b, list)
}

// regMessage is the whole reg request.
func regMessage(addr string) []byte {
	return []byte(CmdReg + "\n" + addr + "\n")
}
