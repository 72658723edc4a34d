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

// ProbeRelay tells a relay from a responder, within timeout and without a
// dial policy: it sends est with an empty list to addr and returns
// ErrResponder when addr answers ok, as a responder does (a relay answers
// fail). An entrance can check a first hop with it before it trusts the
// first hop's ok; a manager probes every service it tests.
func ProbeRelay(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, orDefault(timeout, DefaultTestTimeout))
	defer cancel()
	return probeRelay(ctx, &net.Dialer{}, addr, DefaultMaxLine)
}
