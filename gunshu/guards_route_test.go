package gunshu_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// A restart keeps the guards: a new Dialer with the same store starts at
// the same first hop.
func TestGuardsSurviveRestart(t *testing.T) {
	n := testnet.New(t, 6)
	responder := testnet.EchoResponder(t)
	store := &gunshu.MemoryGuardStore{}
	var guards []string
	for seed := range uint64(3) {
		d := n.Dialer(seed)
		d.Guards = &gunshu.Guards{Store: store}
		conn, err := d.DialContext(context.Background(), responder)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if seed > 0 && !slices.Equal(d.Guards.Current(), guards) {
			t.Fatalf("after restart %d, guards %v, before %v", seed, d.Guards.Current(), guards)
		}
		guards = d.Guards.Current()
	}
	data, err := store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Guards []struct {
			Addr string `json:"addr"`
		} `json:"guards"`
	}
	if err := json.Unmarshal(data, &f); err != nil || len(f.Guards) != 1 || f.Guards[0].Addr != guards[0] {
		t.Fatalf("stored guards %s (%v), want %v", data, err, guards)
	}
}

type brokenStore struct{}

func (brokenStore) Load(context.Context) ([]byte, error) { return []byte("{not json"), nil }
func (brokenStore) Save(context.Context, []byte) error   { return errors.New("read-only") }

// A store that cannot be read or written costs the guards' persistence,
// not the routes.
func TestGuardsBrokenStore(t *testing.T) {
	n := testnet.New(t, 3)
	responder := testnet.EchoResponder(t)
	d := n.Dialer(1)
	d.Guards = &gunshu.Guards{Store: brokenStore{}}
	for range 3 {
		conn, err := d.DialContext(context.Background(), responder)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	if len(d.Guards.Current()) != 1 {
		t.Fatalf("guards %v", d.Guards.Current())
	}
	if err := (&gunshu.Guards{Store: brokenStore{}}).Load(context.Background()); err == nil {
		t.Error("a corrupt guard set loaded without error")
	}
}

// A guard that cannot be dialed is replaced after MaxFailures routes, not
// before.
func TestGuardReplacedAfterDialFailures(t *testing.T) {
	n := testnet.New(t, 4)
	responder := testnet.EchoResponder(t)
	d := n.Dialer(7)
	d.Attempts, d.ListTTL = 1, time.Hour
	d.Guards = &gunshu.Guards{MaxFailures: 3}
	conn, err := d.DialContext(context.Background(), responder)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	guard := d.Guards.Current()[0]
	for _, r := range n.Relays {
		if r.Addr == guard {
			r.Listener.Close() // still listed: the manager is not patrolling
		}
	}
	for i := range 3 {
		if _, err := d.DialContext(context.Background(), responder); err == nil {
			t.Fatalf("route %d through a closed guard succeeded", i+1)
		}
		if got := d.Guards.Current(); !slices.Equal(got, []string{guard}) {
			t.Fatalf("after %d failed dials, guards %v, want %s kept", i+1, got, guard)
		}
	}
	// The closed relay is still listed and may sit later on a route:
	// allow fresh routes behind the new guard.
	d.Attempts = 10
	conn, err = d.DialContext(context.Background(), responder)
	if err != nil {
		t.Fatalf("route after the guard was replaced: %v", err)
	}
	conn.Close()
	if got := d.Guards.Current(); len(got) != 1 || got[0] == guard {
		t.Fatalf("guards %v, want %s replaced", got, guard)
	}
}

// Routes that fail beyond the first hop, as a hostile relay or a dead
// responder can make them, never cost the guard its place.
func TestGuardKeptWhenRoutesFailDownstream(t *testing.T) {
	n := testnet.New(t, 4)
	dead := testkit.ClosedAddr(t)
	d := n.Dialer(8)
	d.Attempts = 1
	d.Guards = &gunshu.Guards{MaxFailures: 2}
	var guard []string
	for i := range 6 {
		_, err := d.DialContext(context.Background(), dead)
		var dial gunshu.ErrDial
		if err == nil || errors.As(err, &dial) {
			t.Fatalf("route %d to a dead responder: %v, want a failure past the first hop", i+1, err)
		}
		if i > 0 && !slices.Equal(d.Guards.Current(), guard) {
			t.Fatalf("guards %v after %d failed routes, were %v", d.Guards.Current(), i+1, guard)
		}
		guard = d.Guards.Current()
	}
}
