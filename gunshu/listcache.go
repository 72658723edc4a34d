package gunshu

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// DefaultListStaleLimit is how long an initiator keeps routing over its
// last good list while the manager fails or lists too few relays.
const DefaultListStaleLimit = 5 * time.Minute

// listCache is an initiator's copy of the manager's list.
type listCache struct {
	list    []string  // the relays routes use
	goodAt  time.Time // when the manager last gave a good list
	goodLen int       // how many usable relays that list held
	askedAt time.Time // when the manager was last asked
	// refreshing is set while a fetch runs in the background; degraded
	// while routes use a last good list the manager did not confirm.
	refreshing, degraded bool
}

// relays returns the relays of the manager's list this initiator may use
// (see usable).
//
// A list is used at once as long as the last good one is younger than
// ListStaleLimit: no route waits on the manager, not even one that hangs.
// Past ListTTL, or a second after the last request when refresh is set (a
// route just failed), a fresh list is fetched in the background. With no
// list yet (or an empty one), past ListStaleLimit, or with a negative
// ListTTL, the caller waits for the manager.
//
// A manager that fails to answer, or lists fewer than half the usable
// relays of the last good list — a manager that restarted and has not
// heard from the relays yet, a registry that came back empty — does not
// replace a last good list younger than ListStaleLimit: routes keep using
// it, together with whatever new the short list holds. (A network that
// really lost half its relays at once is believed after ListStaleLimit.)
func (d *Dialer) relays(ctx context.Context, refresh bool) ([]string, error) {
	now := d.now()
	ttl := d.ListTTL
	if ttl == 0 {
		ttl = DefaultListTTL
	}
	c := &d.lists
	d.mu.Lock()
	// An empty list is never reused: a network whose first relays have
	// not registered yet must not look empty for a whole ListTTL.
	list := c.list
	usable := len(list) > 0 && ttl > 0 && now.Sub(c.goodAt) < d.staleLimit()
	asked := now.Sub(c.askedAt)
	stale := asked >= ttl || refresh && asked >= refreshGap
	background := usable && stale && !c.refreshing
	if background {
		c.refreshing = true
	}
	d.mu.Unlock()
	if background {
		go d.refreshList()
	}
	if usable {
		return list, nil
	}
	fetched, err := FetchList(ctx, d.Manager, d.Timeouts.command(), d.MessageLimits)
	return d.takeList(fetched, err)
}

// refreshGap is how soon after the last request a failed route asks the
// manager again.
const refreshGap = time.Second

func (d *Dialer) refreshList() {
	fetched, err := FetchList(context.Background(), d.Manager, d.Timeouts.command(), d.MessageLimits)
	_, _ = d.takeList(fetched, err)
	d.mu.Lock()
	d.lists.refreshing = false
	d.mu.Unlock()
}

// takeList keeps what the manager answered (fetched, or err) and returns
// the relays routes use now.
func (d *Dialer) takeList(fetched []string, err error) ([]string, error) {
	now := d.now()
	var usable []string
	if err == nil {
		usable = d.usable(fetched)
	}
	c := &d.lists
	d.mu.Lock()
	c.askedAt = now
	keepLast := len(c.list) > 0 && now.Sub(c.goodAt) < d.staleLimit() &&
		(err != nil || 2*len(usable) < c.goodLen)
	wasDegraded := c.degraded
	var list []string
	switch {
	case keepLast:
		if err == nil {
			c.list = union(c.list, usable)
		}
		c.degraded = true
		list = c.list
	case err == nil:
		c.list, c.goodAt, c.goodLen, c.degraded = usable, now, len(usable), false
		list = usable
	}
	lastFor, lastLen := now.Sub(c.goodAt), c.goodLen
	d.mu.Unlock()

	switch {
	case keepLast && !wasDegraded && err != nil:
		d.log.Warn("manager did not answer: routes use the last good list", zap.Duration("list_age", lastFor), zap.String("error", RedactedError(err)))
	case keepLast && !wasDegraded:
		d.log.Warn("manager listed fewer than half the relays of the last good list: routes keep using it",
			zap.Int("listed", len(usable)), zap.Int("last_good", lastLen))
	case !keepLast && wasDegraded && err == nil:
		d.log.Info("manager lists the relays again", zap.Int("listed", len(usable)))
	}
	if keepLast {
		return list, nil
	}
	if err != nil {
		return nil, err
	}
	d.warnRouteSize(len(list))
	return list, nil
}

// staleLimit is ListStaleLimit, or its default; negative: no stale use.
func (d *Dialer) staleLimit() time.Duration {
	switch {
	case d.ListStaleLimit < 0:
		return 0
	case d.ListStaleLimit == 0:
		return DefaultListStaleLimit
	}
	return d.ListStaleLimit
}

func (d *Dialer) now() time.Time {
	if d.clock != nil {
		return d.clock()
	}
	return time.Now()
}

// union is a with the elements of b it lacks appended.
func union(a, b []string) []string {
	seen := make(map[string]struct{}, len(a))
	for _, s := range a {
		seen[s] = struct{}{}
	}
	out := a[:len(a):len(a)]
	for _, s := range b {
		if _, ok := seen[s]; !ok {
			out = append(out, s)
		}
	}
	return out
}
