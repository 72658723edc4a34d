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
	"slices"
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
		Usage: "list --manager <address> | list --admin [--address <interface> | --config <path>] [--name <manager>] | dial --manager <address> <responder>",
		Short: "Lists Gunshu relays or opens a route to a responder",
		Long: `
Tools for the Gunshu relay network.

'caddy gunshu list --manager <address>' asks the manager for its list over
the Gunshu wire, then tests each listed relay itself (16 at a time, each
within --timeout) and prints its address, health (healthy or failing) and
the test's latency, as a table or, with --json, as JSON. --no-test prints
the addresses only.

'caddy gunshu list --admin [--name <manager>]' reads the manager named
<manager> (default "default") from the admin API of the Caddy running it
and prints its own view: health (healthy, failing or untested by its
patrol), last test latency, consecutive failures and the time since the
last registration. The admin endpoint is found as 'caddy stop' finds it:
--address, else the admin address of the config given with --config (and
--adapter), else localhost:2019. With --json it prints the admin API's
answer for the manager.

Both print the network's size and what routes among its relays hide from
a corrupt relay (PRIVACY.md): the figures an entrance with cover checks,
and its warning when the network is too small to meet the targets.

'caddy gunshu dial --manager <address> <responder>' builds a route through
randomly chosen relays to the responder and connects it to standard input
and output, like nc: what you type goes to the responder, what it sends
comes out. When standard input ends the route is half-closed, and the
command ends when the responder closes its side. Its first hops are kept
as guards (--guards, default 1; 0 turns them off) in Caddy's default
storage (its data directory), as an entrance keeps them in Caddy's
storage.`,
		CobraFunc: setupGunshuCommand,
	})
}

// setupGunshuCommand adds the list and dial subcommands to cmd.
func setupGunshuCommand(cmd *cobra.Command) {
	list := &cobra.Command{
		Use:   "list (--manager <address> [--no-test] | --admin [--address <interface>] [--config <path> [--adapter <name>]] [--name <manager>]) [--json]",
		Short: "Prints the relays a manager lists, with their health and latency",
		Args: func(c *cobra.Command, args []string) error {
			if admin, _ := c.Flags().GetBool("admin"); admin && len(args) > 0 {
				return fmt.Errorf("--admin takes no value: give the admin endpoint with --address %s", args[0])
			}
			return cobra.NoArgs(c, args)
		},
		RunE: func(c *cobra.Command, _ []string) error {
			manager, _ := c.Flags().GetString("manager")
			admin, _ := c.Flags().GetBool("admin")
			asJSON, _ := c.Flags().GetBool("json")
			noTest, _ := c.Flags().GetBool("no-test")
			timeout, _ := c.Flags().GetDuration("timeout")
			if !admin {
				return listRelays(c.Context(), c.OutOrStdout(), manager, timeout, !noTest, asJSON)
			}
			if noTest {
				return errors.New("--no-test applies to --manager only: with --admin the manager's own tests are shown")
			}
			address, _ := c.Flags().GetString("address")
			config, _ := c.Flags().GetString("config")
			adapter, _ := c.Flags().GetString("adapter")
			endpoint, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
			if err != nil {
				return fmt.Errorf("finding the admin endpoint: %w", err)
			}
			name, _ := c.Flags().GetString("name")
			return listServices(c.Context(), c.OutOrStdout(), endpoint, name, timeout, asJSON)
		},
	}
	list.Flags().Bool("json", false, "print JSON instead of a table")
	list.Flags().Bool("no-test", false, "print the addresses only, without testing each relay")
	list.Flags().String("manager", "", "address of the Gunshu manager")
	list.Flags().Bool("admin", false, "read the manager's own view from the admin API of the Caddy running it")
	list.Flags().String("address", "", "with --admin: the admin endpoint, if not the config's or the default")
	list.Flags().StringP("config", "c", "", "with --admin: the config whose admin address to use")
	list.Flags().StringP("adapter", "a", "", "with --admin: the adapter of --config")
	list.Flags().String("name", "default", "with --admin: name of the manager in that Caddy's config")
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
				d.Guards = &gunshu.Guards{Count: guards, Store: gunshu.StorageGuardStore(caddy.DefaultStorage, cliGuardKey(manager))}
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

// cliGuardKey is the key of the command's guards for manager in Caddy's
// default storage (its data directory): the key an entrance without cover
// would use, the same for every run.
func cliGuardKey(manager string) string { return gunshu.GuardKey(manager, "") }

// dialResponder builds a route to responder and copies in to it and its
// answers to out, until the responder closes.
func dialResponder(ctx context.Context, in io.Reader, out io.Writer, d *gunshu.Dialer, responder string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	conn, err := openRoute(ctx, d, responder)
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

// openRoute dials responder through d. With guards it holds their storage
// lock meanwhile, so runs at the same time load, choose and save one guard
// set between them rather than each its own.
func openRoute(ctx context.Context, d *gunshu.Dialer, responder string) (net.Conn, error) {
	if d.Guards == nil {
		return d.DialContext(ctx, responder)
	}
	key := cliGuardKey(d.Manager)
	lockCtx, cancel := context.WithTimeout(ctx, orCommandTimeout(d.Timeouts.Route))
	defer cancel()
	if err := caddy.DefaultStorage.Lock(lockCtx, key); err != nil {
		return nil, fmt.Errorf("locking the guards in Caddy's storage: %w", err)
	}
	defer func() { _ = caddy.DefaultStorage.Unlock(context.WithoutCancel(ctx), key) }()
	return d.DialContext(ctx, responder)
}

// listTestConcurrency bounds the relays "caddy gunshu list" tests at once.
const listTestConcurrency = 16

// listedRelay is one relay as "caddy gunshu list --manager" prints it.
// Health is healthHealthy or healthFailing, and absent with --no-test.
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
	health := make([]string, len(relays))
	for i, r := range relays {
		health[i] = r.Health
	}
	network := networkOf(health)
	if asJSON {
		return writeIndentedJSON(w, struct {
			Manager string        `json:"manager"`
			Network networkView   `json:"network"`
			Relays  []listedRelay `json:"relays"`
		}{manager, network, relays})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if test {
		fmt.Fprintln(tw, "#\tADDRESS\tHEALTH\tLATENCY")
	} else {
		fmt.Fprintln(tw, "#\tADDRESS")
	}
	for i, r := range relays {
		if test {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, r.Address, r.Health, formatLatency(r.LatencyMS))
		} else {
			fmt.Fprintf(tw, "%d\t%s\n", i+1, r.Address)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	summary := fmt.Sprintf("%d relay(s) listed by %s", len(relays), manager)
	if test {
		summary += fmt.Sprintf(": %d %s, %d %s", network.Healthy, healthHealthy, network.Failing, healthFailing)
	}
	if _, err := fmt.Fprintln(w, summary); err != nil {
		return err
	}
	return printExposure(w, network.Exposure)
}

// printExposure says whether the network is big enough to hide an
// initiator, with the figures the status page shows.
func printExposure(w io.Writer, e exposureView) error {
	if !e.MeetsTargets {
		_, err := fmt.Fprintf(w, "anonymity: too small to hide anyone well: %s\n", e.Warning)
		return err
	}
	_, err := fmt.Fprintf(w, "anonymity: big enough: among %d usable relays, one corrupt relay can tell it is the first hop "+
		"in %.2f%% of its observations (target %.0f%%; mean posterior %.3f, target %.2f; mean route %.2f relays, target %.1f)\n",
		e.UsableRelays, 100*e.Revealing, 100*gunshu.TargetRevealing, e.MeanPosterior, gunshu.TargetMeanPosterior,
		e.MeanRoute, gunshu.TargetMeanRoute)
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
				r.Health, r.Error = healthFailing, err.Error()
				return
			}
			ms := float64(latency) / float64(time.Millisecond)
			r.Health, r.LatencyMS = healthHealthy, &ms
		}()
	}
	wg.Wait()
}

// listServices reads a manager's network and services, with its patrol's
// test results, from the admin API at endpoint, and prints them to w.
func listServices(ctx context.Context, w io.Writer, endpoint, name string, timeout time.Duration, asJSON bool) error {
	m, err := fetchManager(ctx, endpoint, name, timeout)
	if err != nil {
		return err
	}
	if asJSON {
		return writeIndentedJSON(w, m)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tADDRESS\tHEALTH\tLATENCY\tFAILURES\tLAST REGISTERED")
	now := time.Now()
	for i, s := range m.Services {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s ago\n", i+1, s.Address, s.Health, formatLatency(s.LastTestLatencyMS),
			s.ConsecutiveFailures, now.Sub(s.LastRegistered).Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	n := m.Network
	if _, err := fmt.Fprintf(w, "%d service(s) of manager %q: %d %s, %d %s, %d %s\n", n.Services, name,
		n.Healthy, healthHealthy, n.Failing, healthFailing, n.Untested, healthUntested); err != nil {
		return err
	}
	return printExposure(w, n.Exposure)
}

// fetchManager reads GET /gunshu/managers/<name> from the admin endpoint.
// When that fails, it asks which managers run there, to name them.
func fetchManager(ctx context.Context, endpoint, name string, timeout time.Duration) (managerView, error) {
	var m managerView
	err := adminGet(ctx, endpoint, "/gunshu/managers/"+url.PathEscape(name), timeout, &m)
	if err == nil {
		return m, nil
	}
	var running []managerSummary
	if adminGet(ctx, endpoint, "/gunshu/managers", timeout, &running) != nil || slices.ContainsFunc(running, func(s managerSummary) bool { return s.Name == name }) {
		return m, err
	}
	names := make([]string, len(running))
	for i, s := range running {
		names[i] = s.Name
	}
	if len(names) == 0 {
		return m, fmt.Errorf("no gunshu manager named %q: the Caddy at %s runs none", name, endpoint)
	}
	return m, fmt.Errorf("no gunshu manager named %q: the Caddy at %s runs %s (choose one with --name)", name, endpoint, strings.Join(names, ", "))
}

// maxAdminAnswer bounds the admin API's answer: a million services.
const maxAdminAnswer = 256 << 20

// adminGet GETs path from the admin endpoint with Caddy's own request
// helper (TCP or unix socket, with its Origin), and decodes the JSON
// answer into v, within timeout. The helper has no context: on timeout its
// request is abandoned, to end with the process.
func adminGet(ctx context.Context, endpoint, path string, timeout time.Duration, v any) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, orCommandTimeout(timeout))
	defer cancel()
	type answer struct {
		body []byte
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		body, err := adminGetNow(endpoint, path)
		answered <- answer{body, err}
	}()
	select {
	case a := <-answered:
		if a.err != nil {
			return a.err
		}
		if err := json.Unmarshal(a.body, v); err != nil {
			return fmt.Errorf("decoding the admin API's answer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reading the admin API at %s: %w", endpoint, ctx.Err())
	}
}

func adminGetNow(endpoint, path string) ([]byte, error) {
	// One request per client: the helper's client would keep the
	// connection idle, unclosed, for a request that never comes.
	noReuse := http.Header{"Connection": {"close"}}
	resp, err := caddycmd.AdminAPIRequest(endpoint, http.MethodGet, path, noReuse, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the admin API at %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	return body, nil
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
