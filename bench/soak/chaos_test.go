package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The chaos actions. The plan cycles through them; relays get most. Kills
// and restarts spare the steady nodes (two relays, the manager no entrance
// asks), whose drift is measured.
const (
	killRelay     = "SIGKILL a relay, start it again 3 s later"
	stopRelay     = "SIGSTOP a relay for 10 s"
	restartRelay  = "restart a relay (SIGTERM, start)"
	reloadRelay   = "reload a relay (caddy reload --force)"
	killManager   = "SIGKILL a manager, start it again 3 s later"
	failoverRedis = "SIGKILL the Redis master (Sentinel fails over), start it again 15 s later"
)

// plan is the order of the actions: every kind within the first six, so a
// short run sees each; then mostly relays.
var plan = []string{
	killRelay, stopRelay, killManager, failoverRedis, reloadRelay, restartRelay,
	killRelay, stopRelay, killRelay, stopRelay, restartRelay, reloadRelay,
	killRelay, stopRelay, killManager, killRelay, stopRelay, failoverRedis,
}

// action is what the chaos did, for the report.
type action struct {
	at     time.Duration // since the chaos began
	when   time.Time
	what   string
	target string
	err    error
}

type chaos struct {
	t      *testing.T
	n      *network
	rng    *rand.Rand
	start  time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	log []action
}

// startChaos runs one action about every every (±25 %), in plan order,
// until stopped.
func startChaos(t *testing.T, n *network, every time.Duration) *chaos {
	ctx, cancel := context.WithCancel(context.Background())
	c := &chaos{t: t, n: n, rng: rand.New(rand.NewPCG(18, 2026)), start: time.Now(), cancel: cancel}
	c.wg.Go(func() {
		for i := 0; ; i++ {
			wait := every*3/4 + time.Duration(c.rng.Int64N(int64(every/2)))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			c.do(ctx, plan[i%len(plan)])
		}
	})
	t.Cleanup(func() { c.stop() })
	return c
}

// stop ends the chaos and waits until its last action is undone (a
// stopped relay continued, a killed one started).
func (c *chaos) stop() []action {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log
}

func (c *chaos) record(what, target string, err error) {
	c.mu.Lock()
	c.log = append(c.log, action{at: time.Since(c.start), when: time.Now(), what: what, target: target, err: err})
	c.mu.Unlock()
}

// after runs undo in the background once d passed, or at once when the
// chaos stops.
func (c *chaos) after(ctx context.Context, d time.Duration, undo func()) {
	c.wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		undo()
	})
}

func (c *chaos) do(ctx context.Context, what string) {
	pick := func(n int) int { return c.rng.IntN(n) }
	switch what {
	case killRelay, killManager:
		nodes := c.n.relays
		if what == killManager {
			nodes = c.n.managers
		}
		nd := claim(nodes, true, pick)
		if nd == nil {
			return
		}
		nd.proc.Kill()
		c.record(what, nd.role, nil)
		c.after(ctx, 3*time.Second, func() {
			err := nd.proc.TryRestart()
			if err != nil {
				c.record("start again", nd.role, err)
			}
			nd.release(true)
		})
	case stopRelay:
		nd := claim(c.n.relays, false, pick)
		if nd == nil {
			return
		}
		nd.proc.Signal(syscall.SIGSTOP)
		c.record(what, nd.role, nil)
		c.after(ctx, 10*time.Second, func() {
			nd.proc.Signal(syscall.SIGCONT)
			nd.release(false)
		})
	case restartRelay:
		nd := claim(c.n.relays, true, pick)
		if nd == nil {
			return
		}
		nd.proc.Stop()
		err := nd.proc.TryRestart()
		c.record(what, nd.role, err)
		nd.release(true)
	case reloadRelay:
		nd := claim(c.n.relays, false, pick)
		if nd == nil {
			return
		}
		err := nd.proc.Load(nd.config)
		c.record(what, nd.role, err)
		nd.release(false)
	case failoverRedis:
		master := c.n.currentMaster(ctx)
		if master == nil {
			c.record(what, "", fmt.Errorf("no Sentinel names a master"))
			return
		}
		master.Kill()
		c.record(what, master.Addr, nil)
		c.after(ctx, 15*time.Second, func() {
			if err := master.TryRestart(); err != nil {
				c.record("start Redis again", master.Addr, err)
			}
		})
	}
}
