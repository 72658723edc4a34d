package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gunshu",
		Usage: "list|dial --manager <address> [<responder>] | list --admin <address> [--name <manager>]",
		Short: "Lists Gunshu relays or opens a route to a responder",
		Long: `
Tools for the Gunshu relay network.

'caddy gunshu list --manager <address>' asks the manager for its list over
the Gunshu wire, then tests each listed relay itself (16 at a time, each
within --timeout) and prints its address, health (ok or failing) and the
test's latency, as a table or, with --json, as JSON. --no-test prints the
addresses only.

'caddy gunshu list --admin <address> [--name <manager>]' reads the services
of the manager named <manager> (default "default") from the admin API of
the Caddy running it (e.g. localhost:2019) and prints its own view: health
(healthy, failing or untested by its patrol), last test latency,
consecutive failures and the time since the last registration. With --json
it prints the admin API's JSON array.

'caddy gunshu dial --manager <address> <responder>' builds a route through
randomly chosen relays to the responder and connects it to standard input
and output, like nc: what you type goes to the responder, what it sends
comes out. When standard input ends the route is half-closed, and the
command ends when the responder closes its side. Its first hops are kept
as guards (--guards, default 1; 0 turns them off) in a file under Caddy's
data directory, as an entrance keeps them in Caddy's storage.`,
		CobraFunc: setupGunshuCommand,
	})
}

// setupGunshuCommand adds the list and dial subcommands to cmd.
func setupGunshuCommand(cmd *cobra.Command) {
	list := &cobra.Command{
		Use:   "list (--manager <address> [--no-test] | --admin <address> [--name <manager>]) [--json]",
		Short: "Prints the relays a manager lists, with their health and latency",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			manager, _ := c.Flags().GetString("manager")
			admin, _ := c.Flags().GetString("admin")
			name, _ := c.Flags().GetString("name")
			asJSON, _ := c.Flags().GetBool("json")
			noTest, _ := c.Flags().GetBool("no-test")
			timeout, _ := c.Flags().GetDuration("timeout")
			if admin != "" {
				if noTest {
					return errors.New("--no-test applies to --manager only: with --admin the manager's own tests are shown")
				}
				return listServices(c.Context(), c.OutOrStdout(), admin, name, timeout, asJSON)
			}
			return listRelays(c.Context(), c.OutOrStdout(), manager, timeout, !noTest, asJSON)
		},
	}
	list.Flags().Bool("json", false, "print JSON instead of a table")
	list.Flags().Bool("no-test", false, "print the addresses only, without testing each relay")
	list.Flags().String("admin", "", "Caddy admin endpoint of the Caddy running the manager (e.g. localhost:2019): print the manager's own test results")
	list.Flags().String("name", "default", "with --admin: name of the manager in that Caddy's config")
	list.Flags().String("manager", "", "address of the Gunshu manager")
	list.MarkFlagsOneRequired("manager", "admin")
	list.MarkFlagsMutuallyExclusive("manager", "admin")

	dial := &cobra.Command{
		Use:   "dial --manager <address> <responder>",
		Short: "Connects standard input and output to a responder through a route",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			manager, _ := c.Flags().GetString("manager")
			timeout, _ := c.Flags().GetDuration("timeout")
			maxRelays, _ := c.Flags().GetInt("max-relays")
			routeContinue, _ := c.Flags().GetFloat64("route-continue")
			attempts, _ := c.Flags().GetInt("attempts")
			guards, _ := c.Flags().GetInt("guards")
			d := &gunshu.Dialer{
				Manager: manager, MaxRelays: maxRelays, RouteContinue: routeContinue, Attempts: attempts,
				Timeouts: gunshu.Timeouts{Command: timeout, Route: timeout},
			}
			if err := d.ValidateRouteSize(); err != nil {
				return err
			}
			if guards < 0 {
				return fmt.Errorf("guards must not be negative, got %d", guards)
			}
			if guards > 0 {
				d.Guards = &gunshu.Guards{Count: guards, Store: cliGuardStore(manager)}
			}
			return dialResponder(c.Context(), c.InOrStdin(), c.OutOrStdout(), d, args[0])
		},
	}
	dial.Flags().Int("max-relays", 0, "hard bound on the relays offered to the route (0: 20, -1: the whole list)")
	dial.Flags().Float64("route-continue", 0, "chance a relay passes the route on to another relay, below 1 (0: 0.7)")
	dial.Flags().Int("attempts", 0, "fresh routes tried before giving up (0: 3)")
	dial.Flags().Int("guards", gunshu.DefaultGuards, "first hops kept across runs, in Caddy's data directory (0: a fresh first hop)")

	dial.Flags().String("manager", "", "address of the Gunshu manager (required)")
	_ = dial.MarkFlagRequired("manager")

	for _, sub := range []*cobra.Command{list, dial} {
		sub.Flags().Duration("timeout", gunshu.DefaultCommandTimeout, "bound on each exchange with the network")
		sub.SilenceUsage = true
		cmd.AddCommand(sub)
	}
}

// cliGuardStore keeps the command's guards for manager in a file under
// Caddy's data directory, the same for every run.
func cliGuardStore(manager string) gunshu.GuardStore {
	return gunshu.FileGuardStore(filepath.Join(caddy.AppDataDir(), filepath.FromSlash(gunshu.GuardKey(manager, ""))))
}

// dialResponder builds a route to responder and copies in to it and its
// answers to out, until the responder closes.
func dialResponder(ctx context.Context, in io.Reader, out io.Writer, d *gunshu.Dialer, responder string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	conn, err := d.DialContext(ctx, responder)
	if err != nil {
		return err
	}
	defer conn.Close()
	go func() {
		// Standard input may never end; the route's end ends the command,
		// and closing conn then stops this copy at its next write.
		_, _ = io.Copy(conn, in)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	if _, err := io.Copy(out, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("reading from the route: %w", err)
	}
	return nil
}

// listTestConcurrency bounds the relays "caddy gunshu list" tests at once.
const listTestConcurrency = 16

// listedRelay is one relay as "caddy gunshu list --manager" prints it.
// Health is "ok" or "failing", and absent with --no-test.
type listedRelay struct {
	Address   string   `json:"address"`
	Health    string   `json:"health,omitempty"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// listRelays asks the manager for its list over the Gunshu wire, tests
// each relay itself unless test is false, and prints the result to w.
func listRelays(ctx context.Context, w io.Writer, manager string, timeout time.Duration, test, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if _, err := gunshu.ParseAddr(manager); err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	addrs, err := gunshu.FetchList(ctx, manager, timeout, gunshu.MessageLimits{})
	if err != nil {
		return err
	}
	relays := make([]listedRelay, len(addrs))
	for i, a := range addrs {
		relays[i].Address = a
	}
	if test {
		testRelays(ctx, relays, timeout)
	}
	if asJSON {
		return writeIndentedJSON(w, struct {
			Manager string        `json:"manager"`
			Relays  []listedRelay `json:"relays"`
		}{manager, relays})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if test {
		fmt.Fprintln(tw, "#\tADDRESS\tHEALTH\tLATENCY")
	} else {
		fmt.Fprintln(tw, "#\tADDRESS")
	}
	failing := 0
	for i, r := range relays {
		if !test {
			fmt.Fprintf(tw, "%d\t%s\n", i+1, r.Address)
			continue
		}
		if r.Health != "ok" {
			failing++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, r.Address, r.Health, formatLatency(r.LatencyMS))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	summary := fmt.Sprintf("%d relay(s) listed by %s", len(relays), manager)
	if test {
		summary += fmt.Sprintf(": %d ok, %d failing", len(relays)-failing, failing)
	}
	_, err = fmt.Fprintln(w, summary)
	return err
}

// testRelays sends each relay a Gunshu test, at most listTestConcurrency
// at once and each within timeout, and fills in its health and latency.
func testRelays(ctx context.Context, relays []listedRelay, timeout time.Duration) {
	sem := make(chan struct{}, listTestConcurrency)
	var wg sync.WaitGroup
	for i := range relays {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := &relays[i]
			latency, err := gunshu.Ping(ctx, r.Address, timeout)
			if err != nil {
				r.Health, r.Error = "failing", err.Error()
				return
			}
			ms := float64(latency) / float64(time.Millisecond)
			r.Health, r.LatencyMS = "ok", &ms
		}()
	}
	wg.Wait()
}

// listServices reads a manager's services, with its patrol's test
// results, from the admin API of the Caddy running it, and prints them
// to w.
func listServices(ctx context.Context, w io.Writer, admin, name string, timeout time.Duration, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	services, err := fetchServices(ctx, admin, name, timeout)
	if err != nil {
		return err
	}
	if asJSON {
		return writeIndentedJSON(w, services)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tADDRESS\tHEALTH\tLATENCY\tFAILURES\tLAST REGISTERED")
	now := time.Now()
	for i, s := range services {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s ago\n", i+1, s.Address, s.Health, formatLatency(s.LastTestLatencyMS),
			s.ConsecutiveFailures, now.Sub(s.LastRegistered).Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%d service(s) of manager %q\n", len(services), name)
	return err
}

// maxAdminAnswer bounds the admin API's answer: a million services.
const maxAdminAnswer = 256 << 20

// fetchServices reads GET /gunshu/managers/<name>/services from the
// admin endpoint, within timeout.
func fetchServices(ctx context.Context, admin, name string, timeout time.Duration) ([]serviceView, error) {
	base := strings.TrimSuffix(admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("admin: want host:port or an http URL, got %q", admin)
	}
	u = u.JoinPath("gunshu", "managers", name, "services")
	ctx, cancel := context.WithTimeout(ctx, orCommandTimeout(timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	// The admin endpoint is local: no proxy from the environment.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the admin API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var apiErr struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
			msg = apiErr.Error
		}
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("manager not found in the admin API: %s", msg)
		}
		return nil, fmt.Errorf("admin API: %s: %s", resp.Status, msg)
	}
	var services []serviceView
	if err := json.Unmarshal(body, &services); err != nil {
		return nil, fmt.Errorf("decoding the admin API's answer: %w", err)
	}
	return services, nil
}

func orCommandTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return gunshu.DefaultCommandTimeout
	}
	return d
}

// formatLatency prints a latency in milliseconds, or "-" without one.
func formatLatency(ms *float64) string {
	if ms == nil {
		return "-"
	}
	return strconv.FormatFloat(*ms, 'f', 1, 64) + " ms"
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
