package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine a test started is still alive
// once every test has returned: every link, relay and process the bench
// starts must end with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
