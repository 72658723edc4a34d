package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
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
		Usage: "list|dial --manager <address> [<responder>]",
		Short: "Lists Gunshu relays or opens a route to a responder",
		Long: `
Tools for the Gunshu relay network.

'caddy gunshu list --manager <address>' prints the relays the manager lists,
as a table or, with --json, as JSON.

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
		Use:   "list --manager <address> [--json]",
		Short: "Prints the relays the manager lists",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			manager, _ := c.Flags().GetString("manager")
			asJSON, _ := c.Flags().GetBool("json")
			timeout, _ := c.Flags().GetDuration("timeout")
			return listRelays(c.Context(), c.OutOrStdout(), manager, timeout, asJSON)
		},
	}
	list.Flags().Bool("json", false, "print JSON instead of a table")

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

	for _, sub := range []*cobra.Command{list, dial} {
		sub.Flags().String("manager", "", "address of the Gunshu manager (required)")
		sub.Flags().Duration("timeout", gunshu.DefaultCommandTimeout, "bound on each exchange with the network")
		_ = sub.MarkFlagRequired("manager")
		sub.SilenceUsage = true
		cmd.AddCommand(sub)
	}
}

// cliGuardStore keeps the command's guards for manager in a file under
// Caddy's data directory, the same for every run.
func cliGuardStore(manager string) gunshu.GuardStore {
	return gunshu.FileGuardStore(filepath.Join(caddy.AppDataDir(), filepath.FromSlash(gunshu.GuardKey(manager, ""))))
}

// listRelays prints the manager's list to w.
func listRelays(ctx context.Context, w io.Writer, manager string, timeout time.Duration, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if _, err := gunshu.ParseAddr(manager); err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	relays, err := gunshu.FetchList(ctx, manager, timeout, gunshu.Limits{})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Manager string   `json:"manager"`
			Relays  []string `json:"relays"`
		}{manager, relays})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tRELAY ADDRESS")
	for i, r := range relays {
		fmt.Fprintf(tw, "%d\t%s\n", i+1, r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%d relay(s) listed by %s\n", len(relays), manager)
	return err
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
