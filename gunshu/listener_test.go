package gunshu_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// serveShared serves HTTP on a shared-port listener of r over a fresh
// loopback listener; the handler answers "echo <uri>". handed receives
// when the listener hands the server a connection.
func serveShared(t *testing.T, r *gunshu.Responder) (sl *gunshu.Listener, addr string, handed chan struct{}) {
	t.Helper()
	ln := testkit.Listen(t)
	sl = r.ListenShared(ln, 0)
	handed = make(chan struct{}, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "echo %s", r.RequestURI)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(acceptSignal{sl, handed})
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		sl.Close()
		sl.Wait()
	})
	return sl, ln.Addr().String(), handed
}

func TestSharedListenerStalledPeersDoNotBlockAccept(t *testing.T) {
	_, addr, _ := serveShared(t, &gunshu.Responder{Timeouts: gunshu.Timeouts{Command: 30 * time.Second}})
	// Ten peers that stop inside a Gunshu opening or handshake.
	for _, partial := range []string{"es", "est\n", "est\n1\n", "te", "test"} {
		for range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, partial)
		}
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/after-stalled")
	if err != nil {
		t.Fatalf("plain request behind stalled handshakes: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "echo /after-stalled" {
		t.Fatalf("got %q", body)
	}
}

// acceptSignal tells when its listener hands a connection out (when the
// channel has room).
type acceptSignal struct {
	net.Listener
	accepted chan struct{}
}

func (l acceptSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- struct{}{}:
		default:
		}
	}
	return c, err
}

func TestSharedListenerPassesSilentConnections(t *testing.T) {
	_, addr, handed := serveShared(t, &gunshu.Responder{Timeouts: gunshu.Timeouts{Command: 100 * time.Millisecond}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Silent past the timeout, the connection goes to the server as it is.
	select {
	case <-handed:
	case <-time.After(5 * time.Second):
		t.Fatal("a silent connection was never handed to the server")
	}
	io.WriteString(c, "GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "echo /late" {
		t.Fatalf("got %q", body)
	}
}

func TestSharedListenerCloseEndsPendingSorts(t *testing.T) {
	ln := acceptSignal{testkit.Listen(t), make(chan struct{}, 1)}
	sl := (&gunshu.Responder{Timeouts: gunshu.Timeouts{Command: time.Minute}}).ListenShared(ln, 0)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "est\n")
	<-ln.accepted
	closed := make(chan struct{})
	go func() {
		sl.Close()
		sl.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited on a stalled handshake")
	}
	if _, err := sl.Accept(); err == nil {
		t.Fatal("Accept after Close returned a connection")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("stalled peer's connection stayed open after Close")
	}
}

func TestSharedListenerSurvivesDescriptorExhaustion(t *testing.T) {
	ln := &flakyListener{Listener: testkit.Listen(t)}
	ln.failures.Store(3)
	sl := (&gunshu.Responder{Timeouts: gunshu.Timeouts{Command: time.Second}}).ListenShared(ln, 0)
	t.Cleanup(func() { sl.Close(); sl.Wait() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	got, err := sl.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	defer got.Close()
	first := make([]byte, 4)
	if _, err := io.ReadFull(got, first); err != nil || string(first) != "GET " {
		t.Fatalf("read %q %v", first, err)
	}
}

// BenchmarkListenerPlainRequest measures what sorting costs a plain HTTP
// client: one request on a fresh connection, to an http.Server on the bare
// listener (the baseline) and on a shared-port listener.
func BenchmarkListenerPlainRequest(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "bare"
		if shared {
			name = "sorting"
		}
		b.Run(name, func(b *testing.B) {
			var ln net.Listener = testkit.Listen(b)
			if shared {
				sl := (&gunshu.Responder{}).ListenShared(ln, 0)
				defer sl.Wait()
				ln = sl
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			})}
			go srv.Serve(ln)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			url := fmt.Sprintf("http://%s/", ln.Addr())
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
