package gunshu

import (
	"context"
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
	if err := testExchange(ctx, conn, DefaultMaxLine); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
