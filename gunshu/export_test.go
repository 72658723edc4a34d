package gunshu

// Internals the external tests (package gunshu_test) need.

// ErrDial is the error of a route that failed at dialing its first hop.
type ErrDial = errDial
