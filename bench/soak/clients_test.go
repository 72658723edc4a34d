package soak

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// How clients reach the responder: the fixed entrance, or the proxy
// entrance by SOCKS5 or HTTP CONNECT.
type mode int

const (
	fixedEntrance mode = iota
	socks5Entrance
	connectEntrance
	modes
)

func (m mode) String() string {
	return [...]string{"fixed", "SOCKS5", "HTTP CONNECT"}[m]
}

// outcome of one session.
type outcome int

const (
	ok          outcome = iota // every byte came back intact
	setupFailed                // no route: refused, or closed before the first byte came back
	broken                     // the route broke after bytes had flowed (a relay on it died)
	corrupted                  // a byte came back different
	hung                       // no byte moved for longer than hungAfter
	outcomes
)

func (o outcome) String() string {
	return [...]string{"ok", "setup failed", "broken", "corrupted", "hung"}[o]
}

// tally counts the outcomes by mode.
type tally struct {
	counts [modes][outcomes]int64
	bytes  int64
	// failed are when sessions that were not ok ended (the first 10,000).
	failed []time.Time
}

func (t *tally) sessions(m mode) (n int64) {
	for _, c := range t.counts[m] {
		n += c
	}
	return n
}

func (t *tally) total(o outcome) (n int64) {
	for m := range modes {
		n += t.counts[m][o]
	}
	return n
}

func (t *tally) all() (n int64) {
	for m := range modes {
		n += t.sessions(m)
	}
	return n
}

// clients run sessions in a loop until stopped.
type clients struct {
	mu    sync.Mutex
	tally tally
	ended atomic.Int64
	grew  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

func startClients(t *testing.T, n *network, count int) *clients {
	c := &clients{grew: make(chan struct{}), done: make(chan struct{})}
	for id := range count {
		c.wg.Go(func() { c.run(n, id) })
	}
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *clients) run(n *network, id int) {
	rng := rand.New(rand.NewPCG(uint64(id), 0x50a6))
	for i := 0; ; i++ {
		select {
		case <-c.done:
			return
		default:
		}
		m := mode((id + i) % int(modes))
		size := 16<<10 + rng.IntN(240<<10)
		o, moved := session(n, m, size, rng.Uint64())
		c.mu.Lock()
		c.tally.counts[m][o]++
		c.tally.bytes += moved
		if o != ok && len(c.tally.failed) < 10000 {
			c.tally.failed = append(c.tally.failed, time.Now())
		}
		close(c.grew)
		c.grew = make(chan struct{})
		c.mu.Unlock()
		c.ended.Add(1)
		if o != ok && os.Getenv("SOAK_VERBOSE") != "" {
			fmt.Fprintf(os.Stderr, "%s client %d: %s %s\n", time.Now().Format("15:04:05.000"), id, m, o)
		}
		select {
		case <-c.done:
			return
		case <-time.After(time.Duration(100+rng.IntN(300)) * time.Millisecond): // a person's pace, and a shared machine
		}
	}
}

// waitSessions waits until n sessions ended.
func (c *clients) waitSessions(t *testing.T, n int64) {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for c.ended.Load() < n {
		c.mu.Lock()
		grew := c.grew
		c.mu.Unlock()
		select {
		case <-grew:
		case <-deadline:
			t.Fatalf("only %d of %d sessions ended within 3 minutes", c.ended.Load(), n)
		}
	}
}

// stop ends the clients once their sessions end, and returns the tally.
func (c *clients) stop() tally {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tally
}

// session opens a stream to the echoing responder through the entrance
// of mode m, sends size pseudo-random bytes from seed and reads them back,
// comparing each byte; it returns the outcome and the bytes that came
// back. Every read and write has to make progress within hungAfter.
func session(n *network, m mode, size int, seed uint64) (outcome, int64) {
	entrance := n.fixed
	if m != fixedEntrance {
		entrance = n.proxy
	}
	conn, err := net.DialTimeout("tcp", entrance, hungAfter)
	if err != nil {
		return setupFailed, 0
	}
	defer conn.Close()
	var br *bufio.Reader
	switch m {
	case socks5Entrance:
		err = socks5Connect(conn, n.target)
	case connectEntrance:
		br, err = httpConnect(conn, n.target)
	}
	if err != nil {
		if isTimeout(err) {
			return hung, 0
		}
		return setupFailed, 0
	}
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	sent := make([]byte, size)
	fill(sent, seed)

	wrote := make(chan error, 1)
	go func() {
		var err error
		for off := 0; off < size && err == nil; off += 16 << 10 {
			_ = conn.SetWriteDeadline(time.Now().Add(hungAfter))
			_, err = conn.Write(sent[off:min(off+16<<10, size)])
		}
		wrote <- err
	}()
	got := make([]byte, 32<<10)
	var back int64
	o := ok
	for back < int64(size) {
		_ = conn.SetReadDeadline(time.Now().Add(hungAfter))
		k, err := r.Read(got)
		if k > 0 {
			if !bytes.Equal(got[:k], sent[back:back+int64(k)]) {
				o = corrupted
				break
			}
			back += int64(k)
		}
		if err != nil {
			switch {
			case isTimeout(err):
				o = hung
			case back == 0:
				o = setupFailed
			default:
				o = broken
			}
			break
		}
	}
	conn.Close() // ends the writer too
	<-wrote
	return o, back
}

// fill writes the stream of seed into b.
func fill(b []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// socks5Connect asks for a CONNECT to target (an IPv4 host:port), with no
// authentication, and waits for the reply.
func socks5Connect(c net.Conn, target string) error {
	_ = c.SetDeadline(time.Now().Add(hungAfter))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	host, portText, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portText)
	ip := net.ParseIP(host).To4()
	req := []byte{5, 1, 0, 5, 1, 0, 1}
	req = append(append(req, ip...), byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		return err
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	if reply[0] != 5 || reply[1] != 0 || reply[3] != 0 {
		return fmt.Errorf("socks5 reply %v", reply)
	}
	return nil
}

// httpConnect sends an HTTP CONNECT to target and reads the answer.
func httpConnect(c net.Conn, target string) (*bufio.Reader, error) {
	_ = c.SetDeadline(time.Now().Add(hungAfter))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("CONNECT: %s", resp.Status)
	}
	return br, nil
}
