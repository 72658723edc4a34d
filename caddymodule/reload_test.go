package caddymodule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/mholt/caddy-l4/modules/l4echo"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// reloadCaddyfile is a network in one Caddy: a manager, relays, an echoing
// responder and an entrance to it. {extra} is where the reloaded config
// differs.
const reloadCaddyfile = `{
	admin off
	storage file_system {storage}
	log default {
		level ERROR
	}
	gunshu {
		manager {
			patrol_interval {patrol}
			allow 127.0.0.0/8
			max_per_ip 0
		}
	}
	layer4 {
		{manager} {
			@gunshu gunshu reg list
			route @gunshu {
				gunshu_manager
			}
		}
		{relays}
		{responder} {
			route {
				gunshu_responder
				echo
			}
		}
		{entrance} {
			route {
				gunshu_initiator {responder} {
					manager {manager}
				}
			}
		}
	}
}
`

const reloadRelay = `{relay} {
			@gunshu gunshu est test
			route @gunshu {
				gunshu_relay {
					managers {manager}
					advertise {relay}
					allow 127.0.0.0/8
				}
			}
		}
		`

type reloadNet struct {
	t                            *testing.T
	manager, responder, entrance string
	storage                      string
}

func (n *reloadNet) config(patrol string, relays []string) []byte {
	n.t.Helper()
	var blocks strings.Builder
	for _, r := range relays {
		blocks.WriteString(strings.NewReplacer("{relay}", r, "{manager}", n.manager).Replace(reloadRelay))
	}
	text := strings.ReplaceAll(reloadCaddyfile, "{relays}", blocks.String())
	text = strings.NewReplacer("{storage}", n.storage, "{patrol}", patrol, "{manager}", n.manager,
		"{responder}", n.responder, "{entrance}", n.entrance).Replace(text)
	return adaptCaddyfile(n.t, text)
}

// TestReloadKeepsSessionsFlowing reloads Caddy (a changed config: a new
// relay, another patrol interval) while 200 sessions stream through the
// relays of the same Caddy. Every session keeps flowing through the
// reload on the old handlers' goroutines, and every byte comes back
// intact; new sessions use the new config.
func TestReloadKeepsSessionsFlowing(t *testing.T) {
	const sessions = 200
	n := &reloadNet{t: t, manager: testkit.FreeAddr(t), responder: testkit.FreeAddr(t),
		entrance: testkit.FreeAddr(t), storage: t.TempDir()}
	relays := []string{testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)}
	runConfig(t, n.config("30s", relays))
	testnet.WaitListing(t, n.manager, relays, 10*time.Second)

	deadline := time.Now().Add(60 * time.Second)
	var (
		reloaded   atomic.Bool
		afterCount atomic.Int64 // sessions that finished rounds after the reload
		wg         sync.WaitGroup
		started    sync.WaitGroup
	)
	errs := make(chan error, sessions)
	started.Add(sessions)
	gate := make(chan struct{}) // holds the sessions after the reload until checked
	for i := range sessions {
		wg.Go(func() {
			if err := streamSession(n.entrance, i, deadline, gate, &started, &reloaded, &afterCount); err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
			}
		})
	}
	started.Wait() // every session has a route and streamed a round
	oldRelays := newestApp().Relays()

	// The reload: one more relay, another patrol interval.
	relays = append(relays, testkit.FreeAddr(t))
	if err := caddy.Load(n.config("20s", relays), true); err != nil {
		t.Fatalf("reloading: %v", err)
	}
	reloaded.Store(true)
	// The routes run on the old config's relay handlers: each route holds
	// at least one relay, so they serve at least a session per route.
	active := 0
	for _, r := range oldRelays {
		active += r.Active()
	}
	if active < sessions {
		t.Errorf("the old config's relays serve %d sessions after the reload, want at least %d", active, sessions)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := afterCount.Load(); got != sessions {
		t.Errorf("%d of %d sessions streamed after the reload", got, sessions)
	}

	// The new config serves: its relay registers and new sessions flow.
	testnet.WaitListing(t, n.manager, relays, 10*time.Second)
	var fresh atomic.Bool
	fresh.Store(true)
	var after atomic.Int64
	var none sync.WaitGroup
	none.Add(1)
	if err := streamSession(n.entrance, sessions, time.Now().Add(20*time.Second), gate, &none, &fresh, &after); err != nil {
		t.Errorf("session after the reload: %v", err)
	}
}

// streamSession opens a route through the entrance and sends rounds of
// random bytes, checking that each comes back whole, until it has
// streamed three rounds after the reload; before those it waits for gate.
// It marks started after its first round.
func streamSession(entrance string, id int, deadline time.Time, gate <-chan struct{}, started *sync.WaitGroup, reloaded *atomic.Bool, after *atomic.Int64) error {
	startedOnce := sync.OnceFunc(started.Done)
	defer startedOnce()
	conn, err := net.DialTimeout("tcp", entrance, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	rnd := rand.New(rand.NewPCG(uint64(id), 1))
	sent, got := sha256.New(), sha256.New()
	chunk, back := make([]byte, 4096), make([]byte, 4096)
	roundsAfter := 0
	for round := 0; roundsAfter < 3; round++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("deadline after %d rounds (%d after the reload)", round, roundsAfter)
		}
		wasReloaded := reloaded.Load()
		if wasReloaded && roundsAfter == 0 {
			<-gate
		}
		for i := range chunk {
			chunk[i] = byte(rnd.Uint32())
		}
		if _, err := conn.Write(chunk); err != nil {
			return fmt.Errorf("round %d: writing: %w", round, err)
		}
		if _, err := io.ReadFull(conn, back); err != nil {
			return fmt.Errorf("round %d: reading: %w", round, err)
		}
		sent.Write(chunk)
		got.Write(back)
		if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
			return fmt.Errorf("round %d: checksum of the bytes back differs from the bytes sent", round)
		}
		startedOnce()
		if wasReloaded {
			roundsAfter++
		} else {
			time.Sleep(5 * time.Millisecond) // keep streaming until the reload
		}
	}
	after.Add(1)
	return nil
}

func fetchSorted(manager string) ([]string, error) {
	list, err := gunshu.FetchList(context.Background(), manager, 2*time.Second, gunshu.MessageLimits{})
	slices.Sort(list)
	return list, err
}
