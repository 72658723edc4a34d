package gunshu

import (
	"context"
	"time"
)

// PatrolClaimer is implemented by a Registry that several managers share.
// Before a patrol round, PatrolOnce asks it which of the registered
// addresses this manager should test now; the others are left to the
// other managers. However it shares them out (leases, sharding among the
// live managers), each service should be tested about once per interval
// in all, and the share of a manager that stops should pass to the others
// within about one interval. On error PatrolOnce skips the round.
type PatrolClaimer interface {
	ClaimPatrol(ctx context.Context, addrs []string, interval time.Duration) ([]string, error)
}
