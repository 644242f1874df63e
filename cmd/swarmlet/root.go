package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node"
	"github.com/swarmlet/swarmlet/node/client"
)

type globals struct {
	host string
	tls  tlsFlags
}

var g globals

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "swarmlet",
		Short:         "A small container orchestrator: Raft-replicated state, gossip membership, built-in DNS and load balancing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("SWARMLET_HOST")
	if def == "" {
		def = "unix://" + node.SocketPath(node.DefaultDataDir)
	}
	root.PersistentFlags().StringVar(&g.host, "host", def, "daemon to talk to: unix:///path/to/swarmlet.sock or tcp://HOST:PORT (env SWARMLET_HOST)")
	g.tls.register(root)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%v (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(newInitCmd(), newJoinCmd(), newInfoCmd(), newJoinTokenCmd(), newLeaveCmd(), newNodeCmd(), newServiceCmd(), newImageCmd(), newVersionCmd())
	root.AddCommand(newEventsCmd(), newInstallCmd(), newUninstallCmd(), newStackCmd())
	root.AddCommand(newSecretCmd(), newConfigCmd())
	completeArgs(root)
	root.AddCommand(newCACmd(), newUnlockCmd(), newUnlockKeyCmd(), newGossipKeyCmd(), newProxyCmd(), newBenchCmd())
	return root
}

// newGroup is a command that only holds subcommands. Cobra would print help and
// exit 0 for an unknown subcommand under it (`swarmlet service updat web`): a
// script would think it worked. Like the docker CLI, it fails instead.
func newGroup(use, short string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q (see '%s --help')", args[0], c.CommandPath(), c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			return fmt.Errorf("%q needs a subcommand (see '%s --help')", c.CommandPath(), c.CommandPath())
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{Use: "version", Short: "Print the version", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { fmt.Fprintln(c.OutOrStdout(), node.Version); return nil }}
}

func apiClient() (*client.Client, error) {
	var opt client.Options
	if !strings.HasPrefix(g.host, "unix://") {
		cfg, err := g.tls.config()
		if err != nil {
			return nil, err
		}
		opt.TLS = cfg
	}
	return client.New(g.host, opt)
}

// connect returns a client of the daemon and a context that ends on ^C.
func connect() (*client.Client, context.Context, context.CancelFunc, error) {
	cl, err := apiClient()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := cmdContext()
	return cl, ctx, cancel, nil
}

// cmdContext ends on SIGINT/SIGTERM.
func cmdContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// retryRefused retries a write the cluster refused without applying (an election
// in progress): safe, since a refusal guarantees nothing changed.
func retryRefused[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(6 * time.Second)
	for {
		v, err := f(ctx)
		if err == nil || !errors.Is(err, api.ErrNotLeader) || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 3, ' ', 0) }

func checkFormat(f string) error {
	if f != "" && f != "json" && f != "table" {
		return fmt.Errorf("invalid --format %q: use json or table", f)
	}
	return nil
}
