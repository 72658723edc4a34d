package testkit

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortIsClaimed: a port FreePort handed out cannot be claimed
// again until the test that got it ends; then it can.
func TestFreePortIsClaimed(t *testing.T) {
	var port int
	t.Run("holder", func(t *testing.T) {
		p, err := strconv.Atoi(FreePort(t))
		if err != nil {
			t.Fatal(err)
		}
		port = p
		release, err := claimPort(port)
		if err != nil || release != nil {
			t.Fatalf("a second claim of a claimed port: release %v, %v; want none", release != nil, err)
		}
	})
	release, err := claimPort(port)
	if err != nil || release == nil {
		t.Fatalf("a claim after the holder ended: %v, %v", release != nil, err)
	}
	release()
}

// TestListenSamePort: the listeners share one port, on each IP asked for.
func TestListenSamePort(t *testing.T) {
	lns := ListenSamePort(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	_, port, _ := net.SplitHostPort(lns[0].Addr().String())
	for i, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		if got, want := lns[i].Addr().String(), net.JoinHostPort(ip, port); got != want {
			t.Errorf("listener %d on %s, want %s", i, got, want)
		}
	}
}
