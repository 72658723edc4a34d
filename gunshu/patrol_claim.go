package gunshu

import (
	"context"
	"time"
)

// PatrolClaimer is implemented by a Registry that several managers share.
// Before a patrol round, PatrolOnce asks it which of the registered
// addresses this manager should test now; the others are left to the
// managers that claimed them. A claim lasts about interval, so each
// service is tested about once per interval in total, and the share of a
// manager that stops is taken over by the others when its claims lapse.
type PatrolClaimer interface {
	ClaimPatrol(ctx context.Context, addrs []string, interval time.Duration) ([]string, error)
}
