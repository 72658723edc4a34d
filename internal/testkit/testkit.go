// Package testkit holds the test helpers every package of this module
// shares: loopback listeners and connections, the loopback dial policy,
// an echo server and Eventually. It imports nothing of the module, so
// package gunshu's own tests can use it too.
package testkit

import (
	"errors"
	"io"
	"net"
	"testing"
)

// Listen returns a TCP listener on a free port of 127.0.0.1, closed when
// the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TCPPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func TCPPair(t testing.TB) (near, far *net.TCPConn) {
	t.Helper()
	ln := Listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	ln.Close()
	if a == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); c.Close() })
	return a.(*net.TCPConn), c.(*net.TCPConn)
}

// EchoByte writes b to c and reads one byte back, which must be b.
func EchoByte(c net.Conn, b byte) error {
	if _, err := c.Write([]byte{b}); err != nil {
		return err
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if got[0] != b {
		return errors.New("echo mismatch")
	}
	return nil
}
