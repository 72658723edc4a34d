package caddymodule

import (
	"context"
	"sync"
	"time"
)

// The size sampler: every live manager records its registry's size once
// per sampleInterval, for the status page's chart.

// sampleInterval is the time between two samples of a registry's size;
// historyWindow is how far back the status page charts them.
var (
	sampleInterval = time.Minute
	historyWindow  = time.Hour
)

// sample records the registry's size now and then every interval.
func (lm *liveManager) sample(ctx context.Context, interval time.Duration) {
	defer close(lm.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		lm.sampleNow(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (lm *liveManager) sampleNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := lm.size(ctx); err == nil {
		lm.history.add(time.Now(), n)
	}
}

// size is the number of services registered now.
func (lm *liveManager) size(ctx context.Context) (int, error) {
	m := lm.manager()
	if m == nil {
		return 0, errNotRunning
	}
	addrs, err := m.Registry.Addrs(ctx)
	return len(addrs), err
}

// sizeSample is the size of a registry at one moment.
type sizeSample struct {
	Time     time.Time `json:"time"`
	Services int       `json:"services"`
}

// sizeHistory keeps the samples of the last historyWindow.
type sizeHistory struct {
	mu      sync.Mutex
	samples []sizeSample
}

func (h *sizeHistory) add(now time.Time, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cut := 0
	for cut < len(h.samples) && now.Sub(h.samples[cut].Time) > historyWindow {
		cut++
	}
	h.samples = append(h.samples[cut:], sizeSample{Time: now, Services: n})
}

func (h *sizeHistory) snapshot() []sizeSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sizeSample(nil), h.samples...)
}
