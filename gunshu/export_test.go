package gunshu

import (
	"context"
	"net"
	"time"
)

// Internals the external tests (package gunshu_test) need.

// ErrDial is the error of a route that failed at dialing its first hop.
type ErrDial = errDial

// CheckList is Relay.checkList: what a relay refuses before extending.
func (r *Relay) CheckList(list []string, conn net.Conn) error { return r.checkList(list, conn) }

// PatrolRound is Manager.patrolRound: a round with its tests spread.
func (m *Manager) PatrolRound(ctx context.Context, spread time.Duration) { m.patrolRound(ctx, spread) }
