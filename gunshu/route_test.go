package gunshu_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

func TestEchoThroughRoute(t *testing.T) {
	n := testnet.New(t, 5)
	responder := testnet.EchoResponder(t)
	d := n.Dialer(1)
	conn, err := d.DialContext(context.Background(), responder)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := bytes.Repeat([]byte("gunshu "), 100000)
	go func() {
		_, _ = conn.Write(msg)
		_ = conn.(*net.TCPConn).CloseWrite()
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo mismatch: got %d bytes, want %d", len(got), len(msg))
	}
}

func gunshuClient(d *gunshu.Dialer) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return d.DialContext(ctx, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

func TestHTTPThroughRoutes(t *testing.T) {
	n := testnet.New(t, 5)
	addr := testnet.HTTPResponder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	client := gunshuClient(n.Dialer(2))
	get := func(i int) error {
		resp, err := client.Get(fmt.Sprintf("http://%s/p%d", addr, i))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("page /p%d", i); string(body) != want {
			return fmt.Errorf("got %q, want %q", body, want)
		}
		return nil
	}
	for i := range 200 {
		if err := get(i); err != nil {
			t.Fatalf("sequential request %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := get(1000 + i); err != nil {
				errs <- fmt.Errorf("concurrent request %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHTTPLargeBodies sends and receives bodies of up to half a MiB (a MiB back) through
// routes of up to five relays and checks every byte both ways.
func TestHTTPLargeBodies(t *testing.T) {
	n := testnet.New(t, 5)
	addr := testnet.HTTPResponder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Answer with the request twice: more comes down than went up.
		_, _ = w.Write(body)
		_, _ = w.Write(body)
	}))
	client := gunshuClient(n.Dialer(4))
	for i := range 6 {
		body := bytes.Repeat([]byte{byte(i), 0x5a, 0xff, '\n', 0, 'g'}, (i+1)<<14)
		resp, err := client.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: reading the response: %v", i, err)
		}
		if want := append(append([]byte(nil), body...), body...); !bytes.Equal(got, want) {
			t.Fatalf("request %d: got %d bytes, want %d, or they differ", i, len(got), len(want))
		}
	}
}
