package gunshu

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when any goroutine started by a test (a session,
// an accept loop, a patrol) is still alive once every test has returned:
// each of them must be bounded and stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
