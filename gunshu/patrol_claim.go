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

// HostOf returns the host part of a service address: what per-host caps
// count. A shared registry enforcing the cap elsewhere uses it to count
// exactly as MemoryRegistry does.
func HostOf(addr string) string { return hostOf(addr) }
