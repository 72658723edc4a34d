package soak

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine of the soak (a client, the
// chaos, a process's log reader) is still alive once it returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
