package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Peak-memory load: peakSessions sessions open at once through a chain of
// peakRelays relay processes, then each echoes peakEcho bytes end to end,
// all at the same time.
const (
	peakSessions = 300
	peakRelays   = 3
	peakEcho     = 64 << 10
)

// procStatus reads a field of /proc/pid/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeak sets a process's VmHWM back to its current RSS.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// BenchmarkPeakMemory measures what a relayed session costs at its peak:
// peakSessions sessions through peakRelays relays, each relay a process
// of its own, all open at once and each echoing peakEcho bytes at the
// same time. The figure is (VmHWM after − VmRSS before), summed over the
// relay processes, divided by the relayed sessions (sessions × relays per
// route). splice is a chain of minimal Go relays (io.Copy, which splices);
// gunshu a chain of gunshu.Relay, reached by a client that pipelines est,
// forward and its bytes. Run with -benchtime=1x.
//
// caddy1 is one Caddy process running gunshu_relay (its next hop is random,
// so its routes hold one relay: the responder is the only entry), against
// gunshu1 and splice1, the same one-relay routes.
func BenchmarkPeakMemory(b *testing.B) {
	for _, c := range []struct {
		role string
		hops int
	}{{"splice", peakRelays}, {"gunshu", peakRelays}, {"splice", 1}, {"gunshu", 1}, {"caddy", 1}} {
		name := c.role
		if c.hops != peakRelays {
			name = fmt.Sprintf("%s%d", c.role, c.hops)
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.ReportMetric(peakPerSession(b, c.role, c.hops)/1024, "KiB/session")
			}
		})
	}
}

func peakPerSession(b *testing.B, role string, hops int) float64 {
	var relays []*child
	var dial func() (net.Conn, error)
	if role == "splice" {
		next := startChild(b, "plain", "").addr
		for range hops {
			r := startChild(b, "splice", next)
			relays = append(relays, r)
			next = r.addr
		}
		dial = func() (net.Conn, error) { return dialPlain(next, []byte{opEcho}) }
	} else {
		responder := startChild(b, "responder", "").addr
		for range hops {
			relays = append(relays, startChild(b, role, ""))
		}
		list := []string{}
		for _, r := range relays[1:] {
			list = append(list, r.addr)
		}
		list = append(list, responder)
		est := fmt.Sprintf("est\n%d\n%s\nforward\n", len(list), strings.Join(list, "\n"))
		first := relays[0].addr
		dial = func() (net.Conn, error) {
			c, err := dialPlain(first, append([]byte(est), opEcho))
			if err != nil {
				return nil, err
			}
			var ok [3]byte
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, ok[:]); err != nil || string(ok[:]) != "ok\n" {
				c.Close()
				return nil, fmt.Errorf("route: %q, %v", ok, err)
			}
			return c, nil
		}
	}
	// Warm up with one session, so lazily made state is in the baseline.
	if err := echoSessions(1, dial); err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	var before uint64
	for _, r := range relays {
		pid := r.Cmd.Process.Pid
		if err := resetPeak(pid); err != nil {
			b.Fatal(err)
		}
		rss, err := procStatus(pid, "VmRSS")
		if err != nil {
			b.Fatal(err)
		}
		before += rss
	}
	if err := echoSessions(peakSessions, dial); err != nil {
		b.Fatal(err)
	}
	var peak uint64
	for _, r := range relays {
		hwm, err := procStatus(r.Cmd.Process.Pid, "VmHWM")
		if err != nil {
			b.Fatal(err)
		}
		peak += hwm
	}
	return (float64(peak) - float64(before)) / float64(peakSessions*hops)
}

// echoSessions opens count sessions through dial, and once all are open
// has each send peakEcho bytes and read them back, all at once.
func echoSessions(count int, dial func() (net.Conn, error)) error {
	conns := make([]net.Conn, 0, count)
	defer func() { closeAll(conns) }()
	for range count {
		c, err := dial()
		if err != nil {
			return fmt.Errorf("after %d sessions: %w", len(conns), err)
		}
		conns = append(conns, c)
	}
	payload := bytes.Repeat([]byte("gunshu!\n"), peakEcho/8)
	errs := make(chan error, count)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			go func() {
				_, _ = c.Write(payload)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err == nil && !bytes.Equal(got, payload) {
				err = fmt.Errorf("echo of %d bytes came back as %d", len(payload), len(got))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
