package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestRolesRecoverFromDescriptorExhaustion runs a manager, a relay, a
// responder and an entrance in one Caddy process whose open-file limit is
// lowered with prlimit, fills the descriptor table with idle connections,
// makes every role's listener hit EMFILE, then releases the connections:
// each role answers again by itself within a second of the release, and
// the log and the metrics say it paused and resumed. A relay listening on
// plain TCP, beside them, shows what caddy-l4 does without the gunshu
// network: it never answers again.
func TestRolesRecoverFromDescriptorExhaustion(t *testing.T) {
	port := func() string { return testkit.FreePort(t) }
	manager, relay, responder, entrance, filler, plain := port(), port(), port(), port(), port(), port()
	at := func(p string) string { return "127.0.0.1:" + p }
	config := fmt.Sprintf(`{
	log layer4 {
		output stderr
		format json
		level DEBUG
		include layer4
	}
	gunshu {
		manager {
			patrol_interval 1h
			max_per_ip 0
			allow 127.0.0.0/8
		}
	}
	layer4 {
		gunshu/%[1]s {
			route {
				gunshu_manager
			}
		}
		gunshu/%[2]s {
			route {
				gunshu_relay {
					allow 127.0.0.0/8
				}
			}
		}
		gunshu/%[3]s {
			route {
				gunshu_responder
				echo
			}
		}
		gunshu/%[4]s {
			route {
				gunshu_initiator %[3]s {
					manager %[1]s
					guards 0
				}
			}
		}
		# Holds idle connections for the test to fill the table with.
		gunshu/%[5]s {
			matching_timeout 10m
			@never gunshu reg
			route @never {
				gunshu_manager
			}
		}
		tcp/%[6]s {
			route {
				gunshu_relay {
					allow 127.0.0.0/8
				}
			}
		}
	}
}
`, at(manager), at(relay), at(responder), at(entrance), at(filler), at(plain))
	p := caddyproc.Start(t, caddyproc.Config{Name: "all roles", Caddyfile: config})
	if got := exchange(t, at(manager), "reg\n"+at(relay)+"\n"); got != "ok\n" {
		t.Fatalf("registering the relay: %q", got)
	}
	echoThrough(t, at(entrance), "before")
	// At rest, so that no descriptor is freed while the table is full.
	testkit.Eventually(t, 10*time.Second, "every session has ended", func() bool {
		active, err := p.MetricSum("caddy_gunshu_sessions_active")
		return err == nil && active == 0
	})

	// The limit: what the process holds now, plus room for the fill.
	pid := p.PID()
	const room = 40
	held := countFDs(t, pid)
	limit := uint64(held + room)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	from := p.LogLen()
	var fill []net.Conn
	defer func() { closeAll(fill) }()
	// More than fit, the last few waiting in the backlog. Only a few: the
	// filler's listener takes its backlog when it resumes, and each
	// connection there holds a descriptor until it is read to its end,
	// so a backlog of a hundred would fill the table again while the
	// entrance needs descriptors for its route.
	for range room + 8 {
		fill = append(fill, dial(t, at(filler)))
	}
	if _, err := p.WaitLog(from, "accepting paused", 20*time.Second, `"listener":"`+at(filler)+`"`, `"reason":"descriptors"`); err != nil {
		t.Fatalf("the filler's listener did not pause at %d descriptors: %v", limit, err)
	}

	// One request per role, while no descriptor is left: each listener
	// hits EMFILE and pauses; the plain-TCP one stops.
	type pending struct {
		role, addr, request, want string
		conn                      net.Conn
	}
	reqs := []*pending{
		{role: "manager", addr: at(manager), request: "list\n", want: "1\n" + at(relay) + "\n"},
		{role: "relay", addr: at(relay), request: "test\n", want: "ok\n"},
		{role: "responder", addr: at(responder), request: "test\n", want: "ok\n"},
		{role: "entrance", addr: at(entrance), request: "through the route\n", want: "through the route\n"},
	}
	for _, r := range reqs {
		r.conn = dial(t, r.addr)
		defer r.conn.Close()
		if _, err := r.conn.Write([]byte(r.request)); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitLog(from, "accepting paused", 20*time.Second, `"listener":"`+r.addr+`"`); err != nil {
			t.Fatalf("%s: %v", r.role, err)
		}
	}
	stuck := dial(t, at(plain))
	defer stuck.Close()
	if _, err := p.WaitLog(from, "stopped handling listener socket", 20*time.Second, at(plain), "too many open files"); err != nil {
		t.Fatalf("caddy-l4 did not give up the plain TCP listener: %v", err)
	}

	// Release: every role answers its pending request by itself.
	released := time.Now()
	closeAll(fill)
	fill = nil
	for _, r := range reqs {
		_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(r.want))
		if _, err := io.ReadFull(r.conn, got); err != nil || string(got) != r.want {
			t.Fatalf("%s after the release: got %q, %v; want %q", r.role, got, err, r.want)
		}
		t.Logf("%s answered %v after the release", r.role, time.Since(released).Round(time.Millisecond))
		if _, err := p.WaitLog(from, "accepting again", 10*time.Second, `"listener":"`+r.addr+`"`); err != nil {
			t.Fatalf("%s: %v", r.role, err)
		}
	}
	if d := time.Since(released); d > 5*time.Second {
		t.Errorf("the roles took %v to answer after the release; the pause is at most 1s", d)
	}
	echoThrough(t, at(entrance), "after")
	// The filler's backlog still holds connections the test closed: its
	// listener resumes when its own pause (up to 1 s) ends and it takes
	// them, which may be after the roles answered.
	if _, err := p.WaitLog(from, "accepting again", 10*time.Second, `"listener":"`+at(filler)+`"`); err != nil {
		t.Fatalf("filler: %v", err)
	}

	if n, err := p.MetricSum("caddy_gunshu_accept_pauses_total"); err != nil || n < 5 {
		t.Errorf("accept_pauses_total = %v (%v), want at least 5 (filler and four roles)", n, err)
	}
	// The filler takes its backlog as it resumes, and a listener may run
	// short again for its moment: the gauge comes back to 0.
	paused, err := p.MetricSum("caddy_gunshu_accept_paused")
	for deadline := time.Now().Add(10 * time.Second); (err != nil || paused != 0) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		paused, err = p.MetricSum("caddy_gunshu_accept_paused")
	}
	if err != nil || paused != 0 {
		t.Errorf("accept_paused = %v (%v) 10 s after the recovery, want 0; log:\n%s", paused, err, logOf(p))
	}

	// The plain-TCP relay's socket still takes connections into its
	// backlog, but nothing accepts them any more.
	_ = stuck.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := stuck.Write([]byte("test\n")); err == nil {
		if n, err := stuck.Read(make([]byte, 8)); n > 0 || !isTimeout(err) {
			t.Fatalf("the plain TCP relay answered (%d bytes, %v): the test no longer shows caddy-l4's failure", n, err)
		}
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// exchange sends request on a fresh connection and reads until the
// server closes.
func exchange(t *testing.T, addr, request string) string {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(io.LimitReader(c, 64<<10))
	return string(got)
}

// echoThrough sends a line through the entrance to the echoing responder.
func echoThrough(t *testing.T, entrance, line string) {
	t.Helper()
	c := dial(t, entrance)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(line)+1)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != line+"\n" {
		t.Fatalf("through the entrance: got %q, %v", got, err)
	}
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout() || err != nil && strings.Contains(err.Error(), "timeout") || err == syscall.ETIMEDOUT
}
