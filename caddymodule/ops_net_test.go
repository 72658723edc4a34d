package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/mholt/caddy-l4/modules/l4echo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// opsNet is a whole network in one Caddy loaded from a Caddyfile: a
// manager "main", three relays, a responder that echoes, an entrance
// whose routes hold exactly one relay (max_relays 1, so counts are exact),
// the status page, the admin API on its own port and JSON logs to a file.
type opsNet struct {
	t                      *testing.T
	admin, manager, status string
	relays                 []string
	responder, entrance    string
	logs                   []string // JSON log files: info, debug
	caddyfile              string
}

const opsCaddyfile = `{
	admin {admin}
	storage file_system {storage}
	# Everything at info, as a relay runs by default; our handlers at
	# debug. (caddy-l4's own "layer4" logger names every connection's
	# remote address at debug: see "Logs" in README.md.)
	log default {
		output file {log}
		format json
		level INFO
		exclude layer4.handlers
	}
	log gunshu {
		output file {debuglog}
		format json
		level DEBUG
		include layer4.handlers
	}
	gunshu {
		manager main {
			patrol_interval 300ms
			allow 127.0.0.0/8
			# The relays share 127.0.0.1.
			max_per_ip 0
		}
	}
	layer4 {
		{manager} {
			@gunshu gunshu reg list
			route @gunshu {
				gunshu_manager main
			}
		}
		{relays}
		{responder} {
			route {
				gunshu_responder {
					{log_addresses}
				}
				echo
			}
		}
		{entrance} {
			route {
				gunshu_initiator {responder} {
					manager {manager}
					max_relays 1
					{log_addresses}
				}
			}
		}
	}
}

http://{status} {
	bind 127.0.0.1
	gunshu_status main
}
`

const opsRelayBlock = `{relay} {
			@gunshu gunshu est test
			route @gunshu {
				gunshu_relay {
					managers {manager}
					advertise {relay}
					allow 127.0.0.0/8
					{log_addresses}
				}
			}
		}
		`

// startOpsNet loads the network and waits until the three relays are
// registered. The config stays loaded until the test ends.
func startOpsNet(t *testing.T, logAddresses bool) *opsNet {
	t.Helper()
	n := &opsNet{
		t:     t,
		admin: testkit.FreeAddr(t), manager: testkit.FreeAddr(t), status: testkit.FreeAddr(t),
		responder: testkit.FreeAddr(t), entrance: testkit.FreeAddr(t),
	}
	dir := t.TempDir()
	n.logs = []string{filepath.Join(dir, "info.log"), filepath.Join(dir, "debug.log")}
	var relays strings.Builder
	for range 3 {
		r := testkit.FreeAddr(t)
		n.relays = append(n.relays, r)
		relays.WriteString(strings.ReplaceAll(opsRelayBlock, "{relay}", r))
	}
	logOpt := ""
	if logAddresses {
		logOpt = "log_addresses"
	}
	// The relay blocks go in first: a Replacer makes a single pass.
	caddyfile := strings.ReplaceAll(opsCaddyfile, "{relays}", relays.String())
	caddyfile = strings.NewReplacer(
		"{admin}", n.admin, "{log}", n.logs[0], "{debuglog}", n.logs[1], "{manager}", n.manager, "{status}", n.status,
		"{responder}", n.responder, "{entrance}", n.entrance, "{log_addresses}", logOpt,
		"{storage}", t.TempDir(),
	).Replace(caddyfile)
	n.caddyfile = caddyfile
	t.Cleanup(stopCaddy)
	if err := n.load(nil); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	n.waitServices(len(n.relays))
	return n
}

// load loads the network's Caddyfile, edited by edit.
func (n *opsNet) load(edit func(string) string) error {
	n.t.Helper()
	text := n.caddyfile
	if edit != nil {
		text = edit(text)
	}
	return caddy.Load(adaptCaddyfile(n.t, text), true)
}

// waitServices waits until the admin API lists want services.
func (n *opsNet) waitServices(want int) []serviceView {
	n.t.Helper()
	var services []serviceView
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		services = nil
		if status, _ := n.adminJSON(http.MethodGet, "/gunshu/managers/main/services", &services); status == http.StatusOK && len(services) == want {
			return services
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("manager lists %d services after 15s, want %d: %+v", len(services), want, services)
	return nil
}

var opsHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// adminJSON sends a request to the admin API and decodes the JSON answer
// into v; it returns the status and the raw body.
func (n *opsNet) adminJSON(method, path string, v any) (int, []byte) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.admin+path, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	// Every config load replaces the admin endpoint and shuts the old one
	// down in the background: a request right after a load may meet it
	// closing. The new one answers within moments.
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		if resp, err = opsHTTP.Do(req); err == nil {
			break
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s %s: %v", method, path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		n.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && path != "/metrics" {
		n.t.Errorf("%s %s: Content-Type %q, want JSON", method, path, ct)
	}
	if v != nil && len(body) > 0 {
		if err := json.Unmarshal(body, v); err != nil {
			n.t.Fatalf("%s %s: decoding %q: %v", method, path, body, err)
		}
	}
	return resp.StatusCode, body
}

// scrape reads the admin /metrics endpoint.
func (n *opsNet) scrape() metricFamilies {
	n.t.Helper()
	status, body := n.adminJSON(http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		n.t.Fatalf("GET /metrics: %d %s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		n.t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// session carries payload through the entrance and returns the echo.
func (n *opsNet) session(payload []byte) ([]byte, string, error) {
	conn, err := net.DialTimeout("tcp", n.entrance, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(payload); err != nil {
		return nil, local, err
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return nil, local, err
	}
	echo, err := io.ReadAll(conn)
	return echo, local, err
}

// opsExchange sends raw protocol bytes to addr and returns the answer.
func opsExchange(addr, send string) (string, error) {
	return attacks.Exchange(&net.Dialer{Timeout: 5 * time.Second}, addr, send)
}

// metricFamilies is a scrape, by family name.
type metricFamilies map[string]*dto.MetricFamily

// value is the value of the series of name whose labels include labels
// (given as name, value pairs); 0 when there is no such series. For a
// histogram it is the sample count.
func (mf metricFamilies) value(name string, labels ...string) float64 {
	f, ok := mf[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		if hasLabels(m, labels) {
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// readLog returns the JSON log entries written so far to either file.
func (n *opsNet) readLog() []map[string]any {
	n.t.Helper()
	var entries []map[string]any
	for _, name := range n.logs {
		raw, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			n.t.Fatal(err)
		}
		for _, line := range bytes.Split(raw, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var e map[string]any
			if err := json.Unmarshal(line, &e); err != nil {
				n.t.Fatalf("log line is not JSON: %q", line)
			}
			entries = append(entries, e)
		}
	}
	return entries
}

func (n *opsNet) String() string {
	return fmt.Sprintf("manager %s, relays %v, responder %s, entrance %s", n.manager, n.relays, n.responder, n.entrance)
}
