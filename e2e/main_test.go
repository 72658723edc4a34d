package e2e

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine a test started is still alive
// once every test has returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
