package testkit

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Child is this test binary run again as a process of its own, for a
// server a test must see from outside: with its own open-file limit, or
// killed so that the kernel closes its sockets.
type Child struct {
	Cmd *exec.Cmd
	// In is the child's stdin: a child runs until it ends.
	In io.WriteCloser
	// Out is the child's stdout, by lines, after the first.
	Out *bufio.Scanner
	// First is the first line the child wrote: its address, or "ready".
	First string

	stop sync.Once
}

// StartChild runs this test binary again with the tests that match run
// ("^TestHelperX$", or "^$" for TestMain alone) and env added to its
// environment, and waits up to 30 s for the first line of its stdout.
// Stop ends it, as the end of the test does.
func StartChild(t testing.TB, run string, env ...string) *Child {
	t.Helper()
	// os.Executable, not os.Args[0]: the command tests rewrite os.Args.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run="+run)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	c := &Child{Cmd: cmd}
	if c.In, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	c.Out = bufio.NewScanner(out)
	first := make(chan bool, 1)
	go func() { first <- c.Out.Scan() }()
	select {
	case ok := <-first:
		if !ok {
			t.Fatalf("the child %s %v ended before its first line", run, env)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the child %s %v wrote no line in 30 s", run, env)
	}
	c.First = c.Out.Text()
	return c
}

// Stop closes the child's stdin and waits for it to exit; after 10 s it
// kills it.
func (c *Child) Stop() {
	c.stop.Do(func() {
		c.In.Close()
		done := make(chan struct{})
		go func() { _ = c.Cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Cmd.Process.Kill()
			<-done
		}
	})
}
