package caddymodule

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// BenchmarkListenerPlainRequest measures what sorting costs a plain HTTP
// client: one request on a fresh connection, to an http.Server on the bare
// listener (the baseline) and on the sorting listener.
func BenchmarkListenerPlainRequest(b *testing.B) {
	for _, sorted := range []bool{false, true} {
		name := "bare"
		if sorted {
			name = "sorting"
		}
		b.Run(name, func(b *testing.B) {
			var ln net.Listener = testkit.Listen(b)
			if sorted {
				ln = newSortingListener(ln, &gunshu.Responder{}, 0, 0)
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
