package gunshu

import "net"

// Internals the external tests (package gunshu_test) need.

// ErrDial is the error of a route that failed at dialing its first hop.
type ErrDial = errDial

// CheckList is Relay.checkList: what a relay refuses before extending.
func (r *Relay) CheckList(list []string, conn net.Conn) error { return r.checkList(list, conn) }
