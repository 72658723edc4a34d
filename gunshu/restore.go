package gunshu

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// Restore lists again the services of a saved list — the registry of a
// manager that restarted — each on the terms of a fresh reg: the policy,
// the caps and, unless DisableVerify, a test it must answer now. A saved
// address that is gone, or no longer allowed, is not listed again.
// Addresses already registered are left alone. It tests
// PatrolConcurrency services at a time, stops early when ctx ends, and
// returns how many it listed. Unlike a reg, a restore is not reported to
// OnRegister, and what it does not list is logged at debug level only: the
// caller sums it up.
func (m *Manager) Restore(ctx context.Context, addrs []string) int {
	m.init()
	known, _ := m.Registry.Addrs(ctx)
	skip := make(map[string]bool, len(known))
	for _, a := range known {
		skip[a] = true
	}
	limit := m.PatrolConcurrency
	if limit <= 0 {
		limit = DefaultPatrolConcurrency
	}
	sem := make(chan struct{}, limit)
	var (
		wg       sync.WaitGroup
		restored atomic.Int64
	)
	for _, addr := range addrs {
		if skip[addr] {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return int(restored.Load())
		}
		wg.Go(func() {
			defer func() { <-sem }()
			a, err := ParseAddr(addr)
			if err == nil {
				err = m.list(ctx, a, netip.Addr{})
			}
			if err != nil {
				m.log.Debug("saved service not listed again", zap.String("service", addr), zap.Error(err))
				return
			}
			restored.Add(1)
		})
	}
	wg.Wait()
	return int(restored.Load())
}
