package gunshu

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

// Role names the part a session played.
type Role string

// Roles of the protocol.
const (
	RoleManager   Role = "manager"
	RoleRelay     Role = "relay"
	RoleResponder Role = "responder"
	RoleInitiator Role = "initiator"
)

// Outcome classifies how a session or exchange ended. It never carries an
// address, so it is safe as a metric label.
type Outcome string

// Outcomes.
const (
	OutcomeOK            Outcome = "ok"
	OutcomeNextHopFailed Outcome = "next_hop_failed"
	OutcomeDialFailed    Outcome = "dial_failed"
	OutcomeTimeout       Outcome = "timeout"
	OutcomeBadInput      Outcome = "bad_input"
	OutcomePolicyDenied  Outcome = "policy_denied"
	OutcomeClosed        Outcome = "closed"
	// OutcomeLimited is a session refused by a connection bound, a
	// registration rate limit or a registry cap.
	OutcomeLimited Outcome = "limited"
)

// Session describes one finished connection of a role.
type Session struct {
	Role    Role
	Command string // the first command: est, test, reg, list
	Outcome Outcome
	// Handshake is the time from accepting the connection to the start
	// of forwarding (or to the reply, for one-shot exchanges).
	Handshake time.Duration
	// Duration is the whole lifetime of the connection.
	Duration time.Duration
	Bytes    forward.Counts
	// Err is why the session ended early; for an established route it
	// may be a reset in forward mode, which leaves Outcome ok.
	Err error
	// Remote is the peer's address, set only when the operator asked for
	// addresses in logs.
	Remote string
}

// IsProbe reports a session that was the responder probe (est with an
// empty list, sent by managers and entrances to tell a relay from a
// responder), not a route.
func (s Session) IsProbe() bool {
	return s.Command == CmdEst && errors.Is(s.Err, ErrEmptyList)
}

// end fills in the end of a session: the outcome is that of the
// handshake, so a route that was established counts as ok however its
// stream ended later.
func (s *Session) end(start time.Time, err error) {
	s.Duration = time.Since(start)
	s.Err = err
	if s.Handshake > 0 {
		s.Outcome = OutcomeOK
	} else {
		s.Outcome = classify(err)
	}
}

// startSession counts a session of role as started and opens its record.
// The peer's address is in it only when the operator asked for addresses
// in logs.
func startSession(obs Observer, role Role, conn net.Conn, logAddresses bool) Session {
	obs.SessionStarted(role)
	s := Session{Role: role}
	if logAddresses {
		s.Remote = conn.RemoteAddr().String()
	}
	return s
}

// finish ends the record of a session begun at start, counts it and
// writes its log line.
func (s *Session) finish(obs Observer, log *zap.Logger, start time.Time, err error) {
	s.end(start, err)
	obs.SessionEnded(*s)
	logSession(log, *s)
}

// finishExchange is finish for a manager's one-shot exchange: the reply
// is the whole exchange, so its handshake is its duration, and it writes
// no session line, only a failure at debug level, redacted: the peer may
// be an initiator asking for the list.
func (s *Session) finishExchange(obs Observer, log *zap.Logger, start time.Time, err error) {
	s.end(start, err)
	s.Handshake = s.Duration
	obs.SessionEnded(*s)
	if err != nil {
		log.Debug("exchange failed", zap.String("command", s.Command), zap.String("error", RedactedError(err)))
	}
}

// Observer receives session events, for metrics. Implementations must be
// safe for concurrent use and fast: they run on the session's goroutine.
type Observer interface {
	SessionStarted(Role)
	SessionEnded(Session)
}

type nopObserver struct{}

func (nopObserver) SessionStarted(Role)  {}
func (nopObserver) SessionEnded(Session) {}

func observerOr(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}

func loggerOr(l *zap.Logger) *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	return l
}

// classify maps an error to an outcome.
func classify(err error) Outcome {
	var (
		ne   net.Error
		dial errDial
		next errNextHop
	)
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrPolicyDenied), errors.Is(err, ErrSourceMismatch), errors.Is(err, ErrResponder):
		return OutcomePolicyDenied
	case errors.Is(err, ErrTooManySessions), errors.Is(err, ErrTooManyFromIP), errors.Is(err, ErrRateLimited),
		errors.Is(err, ErrGroupFull), errors.Is(err, ErrNetworkFull), errors.Is(err, ErrRegistryFull), errors.Is(err, ErrSilentClients):
		return OutcomeLimited
	case errors.Is(err, forward.ErrIdleTimeout), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	case errors.As(err, &dial):
		return OutcomeDialFailed
	case errors.As(err, &next), errors.Is(err, ErrFailed):
		return OutcomeNextHopFailed
	case errors.Is(err, ErrLineTooLong), errors.Is(err, ErrBadCount), errors.Is(err, ErrCountTooLarge),
		errors.Is(err, ErrBadAddress), errors.Is(err, ErrUnknown), errors.Is(err, ErrUnexpected),
		errors.Is(err, ErrEmptyList), errors.Is(err, ErrBadList):
		return OutcomeBadInput
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return OutcomeClosed
	}
	return OutcomeBadInput
}

// logSession writes the one info line of a finished session. It names no
// peer: a relay's or responder's log must not help to find its users.
func logSession(l *zap.Logger, s Session) {
	if !l.Core().Enabled(zap.InfoLevel) {
		return
	}
	fields := []zap.Field{
		zap.String("role", string(s.Role)),
		zap.String("command", s.Command),
		zap.String("outcome", string(s.Outcome)),
		zap.Duration("handshake", s.Handshake),
		zap.Duration("duration", s.Duration),
		zap.Int64("bytes_up", s.Bytes.Up),
		zap.Int64("bytes_down", s.Bytes.Down),
	}
	if s.Err != nil {
		fields = append(fields, zap.String("error", RedactedError(s.Err)))
	}
	if s.Remote != "" {
		fields = append(fields, zap.String("remote", s.Remote))
	}
	l.Info("session", fields...)
}
