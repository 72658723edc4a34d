package gunshu

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Ping sends test to addr and waits for ok, within timeout, without a
// dial policy: it is for an operator's own services (a relay checking
// that its listener is up before it registers), not for strangers'.
func Ping(ctx context.Context, addr string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(timeout, DefaultTestTimeout))
	defer cancel()
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(testLine); err != nil {
		return 0, fmt.Errorf("sending test: %w", err)
	}
	lr := newLineReader(conn, nil, DefaultMaxLine)
	defer lr.release()
	if err := lr.expectLine(ReplyOK); err != nil {
		return 0, fmt.Errorf("waiting for ok: %w", err)
	}
	return time.Since(start), nil
}

// SetLimits changes the caps of a registry in use; services already
// registered are kept even when they exceed a lowered cap.
func (m *MemoryRegistry) SetLimits(maxServices, maxPerIP int) {
	m.mu.Lock()
	m.MaxServices, m.MaxPerIP = maxServices, maxPerIP
	m.mu.Unlock()
}
