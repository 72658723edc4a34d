package gunshu

import (
	"context"
	"fmt"
	"net"
	"time"
)

// The client side of the one-shot exchanges: list (FetchList, for
// initiators), reg (Register, for relays) and test (Ping, and the
// manager's verification and patrol).

// FetchList asks the manager at addr for its list, within timeout.
func FetchList(ctx context.Context, manager string, timeout time.Duration, l MessageLimits) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(timeout, DefaultCommandTimeout))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", manager)
	if err != nil {
		return nil, fmt.Errorf("dialing manager: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(listLine); err != nil {
		return nil, fmt.Errorf("sending list: %w", err)
	}
	lr := newLineReader(conn, nil, l.maxLine())
	defer lr.release()
	list, err := lr.readList(l.maxList())
	if err != nil {
		return nil, fmt.Errorf("reading list: %w", err)
	}
	return list, nil
}

// Register sends reg for advertise to the manager at addr and waits for
// ok, within timeout.
func Register(ctx context.Context, manager, advertise string, timeout time.Duration) error {
	return register(ctx, &net.Dialer{}, manager, advertise, timeout)
}

func register(ctx context.Context, d *net.Dialer, manager, advertise string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, orDefault(timeout, DefaultRouteTimeout))
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", manager)
	if err != nil {
		return fmt.Errorf("dialing manager: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(regMessage(advertise)); err != nil {
		return fmt.Errorf("sending reg: %w", err)
	}
	lr := newLineReader(conn, nil, DefaultMaxLine)
	defer lr.release()
	if err := lr.expectLine(ReplyOK); err != nil {
		return fmt.Errorf("waiting for ok: %w", err)
	}
	return nil
}

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

// testExchange sends test on conn and waits for ok, until ctx's deadline.
func testExchange(ctx context.Context, conn net.Conn, maxLine int) error {
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(testLine); err != nil {
		return fmt.Errorf("sending test: %w", err)
	}
	lr := newLineReader(conn, nil, maxLine)
	defer lr.release()
	if err := lr.expectLine(ReplyOK); err != nil {
		return fmt.Errorf("waiting for ok: %w", err)
	}
	return nil
}
