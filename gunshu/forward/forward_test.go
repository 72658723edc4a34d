package forward

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestCopyIdleUserSpace covers the copy path used for connections that
// cannot splice.
func TestCopyIdleUserSpace(t *testing.T) {
	upNear, upFar := net.Pipe()
	downNear, downFar := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Copy(upNear, downNear, nil, nil, 500*time.Millisecond)
		done <- err
	}()
	go func() { _, _ = io.Copy(downFar, downFar) }()
	for i := range 5 {
		if err := testkit.EchoByte(upFar, byte(i)); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		time.Sleep(80 * time.Millisecond)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrIdleTimeout) {
			t.Fatalf("Copy = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("idle session not ended")
	}
}
