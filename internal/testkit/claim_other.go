//go:build !unix

package testkit

import "sync"

// claimed are the ports this process has claimed: without flock, claims
// hold within the process only.
var claimed sync.Map

// claimPort claims port within this test process; release gives it back.
// A claim that another test holds gives (nil, nil).
func claimPort(port int) (release func(), err error) {
	if _, taken := claimed.LoadOrStore(port, struct{}{}); taken {
		return nil, nil
	}
	return func() { claimed.Delete(port) }, nil
}
