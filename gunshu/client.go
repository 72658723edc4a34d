package gunshu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// The client side of the one-shot exchanges: list (FetchList, for
// initiators), reg (Register, for relays) and test (Ping, and the
// manager's verification and patrol).

// FetchList asks the manager at addr for its list, within timeout.
func FetchList(ctx context.Context, manager string, timeout time.Duration, l MessageLimits) ([]string, error) {
	var list []string
	err := askManager(ctx, &net.Dialer{}, manager, orDefault(timeout, DefaultCommandTimeout), listLine, l.maxLine(),
		func(lr *lineReader) (err error) {
			if list, err = lr.readList(l.maxList()); err != nil {
				return fmt.Errorf("reading list: %w", err)
			}
			return nil
		})
	return list, err
}

// Register sends reg for advertise to the manager at addr and waits for
// ok, within timeout.
// It connects from the advertised IP when that is an address of this
// machine (see Registrar.Dialer).
func Register(ctx context.Context, manager, advertise string, timeout time.Duration) error {
	return register(ctx, sourceDialer(advertise), manager, advertise, timeout)
}

// sourceDialer connects from advertise's IP when it is an address of this
// machine, so that a manager requiring the source to match sees the
// address registered.
func sourceDialer(advertise string) *net.Dialer {
	d := &net.Dialer{}
	if local := coverLocalAddr(advertise); local != nil {
		d.LocalAddr = local
	}
	return d
}

func register(ctx context.Context, d *net.Dialer, manager, advertise string, timeout time.Duration) error {
	return askManager(ctx, d, manager, orDefault(timeout, DefaultRouteTimeout), regMessage(advertise), DefaultMaxLine, expectOK)
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
	return roundTrip(ctx, conn, testLine, maxLine, expectOK)
}

// askManager dials the manager at addr with d and runs one exchange with
// it, all within timeout.
func askManager(ctx context.Context, d *net.Dialer, manager string, timeout time.Duration, request []byte, maxLine int, read func(*lineReader) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", manager)
	if err != nil {
		return fmt.Errorf("dialing manager: %w", err)
	}
	defer conn.Close()
	return roundTrip(ctx, conn, request, maxLine, read)
}

// roundTrip sends request on conn and hands the answer to read, all before
// ctx's deadline: the client side of every one-shot exchange.
func roundTrip(ctx context.Context, conn net.Conn, request []byte, maxLine int, read func(*lineReader) error) error {
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(request); err != nil {
		cmd, _, _ := strings.Cut(string(request), "\n")
		return fmt.Errorf("sending %s: %w", cmd, err)
	}
	lr := newLineReader(conn, nil, maxLine)
	defer lr.release()
	return read(lr)
}

// expectOK reads an exchange's ok.
func expectOK(lr *lineReader) error {
	if err := lr.expectLine(ReplyOK); err != nil {
		return fmt.Errorf("waiting for ok: %w", err)
	}
	return nil
}

// ProbeRelay tells a relay from a responder, within timeout and without a
// dial policy: it sends est with an empty list to addr and returns
// ErrResponder when addr answers ok, as a responder does (a relay answers
// fail). An entrance can check a first hop with it before it trusts the
// first hop's ok; a manager probes every service it verifies.
func ProbeRelay(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, orDefault(timeout, DefaultTestTimeout))
	defer cancel()
	return probeRelay(ctx, &net.Dialer{}, addr, DefaultMaxLine)
}

// ErrResponder reports an address that answers est with an empty list
// with ok. A relay answers fail (it has no next hop: PROTOCOL.md); a
// responder reads any list and answers ok. A manager does not list it.
var ErrResponder = errors.New("answered ok to est with an empty list: a responder, not a relay")

// probeLine is the probe of probeRelay: est with an empty list.
var probeLine = []byte(CmdEst + "\n0\n")

// probeRelay sends est with an empty list to addr and refuses an ok with
// ErrResponder. fail is what a relay answers; a relay may also cut the
// connection instead (the 2003 text allows it), and a probe it could not
// reach or that timed out proves nothing either way: those pass.
func probeRelay(ctx context.Context, d *net.Dialer, addr string, maxLine int) error {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(probeLine); err != nil {
		return nil
	}
	lr := newLineReader(conn, nil, maxLine)
	defer lr.release()
	if lr.expectLine(ReplyOK) == nil {
		return ErrResponder
	}
	return nil
}
