package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestEntranceRoutesThroughManagerRestart: relays register once (their
// register interval is longer than the test), then the manager is killed
// with SIGKILL and started again on the same storage while clients keep
// opening sessions through an entrance. The entrance routes over its last
// good list while the manager is down; the restarted manager lists every
// relay again from its snapshot, verified, before any relay registers
// again; and at least 99 % of the sessions opened meanwhile succeed.
func TestEntranceRoutesThroughManagerRestart(t *testing.T) {
	port := func() string { return testkit.FreePort(t) }
	at := func(p string) string { return "127.0.0.1:" + p }
	manager := at(port())
	mgr := caddyproc.Start(t, caddyproc.Config{Name: "manager", Caddyfile: fmt.Sprintf(`{
	gunshu {
		manager {
			allow 127.0.0.0/8
			max_per_ip 0
			max_per_network 0
		}
	}
	layer4 {
		gunshu/%s {
			route {
				gunshu_manager
			}
		}
	}
}
`, manager)})

	var relays []string
	var servers strings.Builder
	for range 4 {
		r := at(port())
		relays = append(relays, r)
		fmt.Fprintf(&servers, `
		gunshu/%s {
			route {
				gunshu_relay {
					managers %s
					advertise %s
					register_interval 1h
					allow 127.0.0.0/8
				}
			}
		}`, r, manager, r)
	}
	slices.Sort(relays)
	responder := at(port())
	caddyproc.Start(t, caddyproc.Config{Name: "relays", Caddyfile: fmt.Sprintf(`{
	layer4 {%s
		gunshu/%s {
			route {
				gunshu_responder
				echo
			}
		}
	}
}
`, servers.String(), responder)})
	entrance := at(port())
	caddyproc.Start(t, caddyproc.Config{Name: "entrance", Caddyfile: fmt.Sprintf(`{
	layer4 {
		gunshu/%s {
			route {
				gunshu_initiator %s {
					manager %s
				}
			}
		}
	}
}
`, entrance, responder, manager)})

	testnet.WaitListed(t, manager, relays, 30*time.Second)
	snapshot := filepath.Join(mgr.DataDir, "data", "caddy", "gunshu", "registries", "default.json")
	waitSnapshot(t, snapshot, relays)

	load := startLoad(t, entrance, 8)
	load.waitSessions(t, 50)
	mgr.Kill()
	load.waitSessions(t, 100) // the manager is down meanwhile
	mgr.Restart()
	restarted := time.Now()
	testnet.WaitListed(t, manager, relays, 10*time.Second)
	t.Logf("the restarted manager lists the %d relays %v after it serves", len(relays), time.Since(restarted).Round(time.Millisecond))
	load.waitSessions(t, 100)
	ok, failed := load.stop()
	t.Logf("sessions through the restart: %d ok, %d failed", ok, failed)
	if failed*100 > ok+failed {
		t.Fatalf("%d of %d sessions failed through a manager restart, more than 1%%", failed, ok+failed)
	}
}

// waitSnapshot waits until the registry snapshot file holds want.
func waitSnapshot(t *testing.T, path string, want []string) {
	t.Helper()
	var got struct{ Services []string }
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		data, err := os.ReadFile(path)
		if err == nil && json.Unmarshal(data, &got) == nil && slices.Equal(got.Services, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s holds %v, want %v", path, got.Services, want)
		}
	}
}

// load keeps clients opening short sessions through an entrance, each
// checking that its random bytes come back intact.
type load struct {
	ok, failed atomic.Int64
	done       chan struct{}
	wg         sync.WaitGroup
	grew       chan struct{}
	mu         sync.Mutex
}

func startLoad(t *testing.T, entrance string, clients int) *load {
	l := &load{done: make(chan struct{}), grew: make(chan struct{})}
	for range clients {
		l.wg.Go(func() {
			for {
				select {
				case <-l.done:
					return
				default:
				}
				if err := session(entrance); err != nil {
					l.failed.Add(1)
					t.Logf("session failed: %v", err)
				} else {
					l.ok.Add(1)
				}
				l.mu.Lock()
				close(l.grew)
				l.grew = make(chan struct{})
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// waitSessions waits until n more sessions ended.
func (l *load) waitSessions(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + l.failed.Load() + n
	deadline := time.After(60 * time.Second)
	for l.ok.Load()+l.failed.Load() < target {
		l.mu.Lock()
		grew := l.grew
		l.mu.Unlock()
		select {
		case <-grew:
		case <-deadline:
			t.Fatalf("fewer than %d sessions ended within 60s", n)
		}
	}
}

func (l *load) stop() (ok, failed int64) {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}

// session sends 4 KiB of random bytes through the entrance to the echoing
// responder and checks they come back.
func session(entrance string) error {
	c, err := net.DialTimeout("tcp", entrance, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := make([]byte, 4096)
	_, _ = rand.Read(msg)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("corrupted")
	}
	return nil
}
