package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // --pprof
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/bench/hollow"
)

func newBenchCmd() *cobra.Command {
	c := newGroup("bench", "Load generators for measuring a cluster")
	c.AddCommand(newBenchHollowCmd())
	return c
}

func newBenchHollowCmd() *cobra.Command {
	var (
		cfg    hollow.Config
		prefix string
		gmode  string
		every  time.Duration
		prof   string
	)
	c := &cobra.Command{
		Use:   "hollow --join ADDR --token TOKEN --nodes N",
		Short: "Run N simulated nodes in this process: real joins, sessions and gossip, a fake engine",
		Long: `Runs N hollow nodes against the managers at --join until interrupted. Each joins
with the token (a certificate for a key of its own, the ID the leader picks), gossips
on its own loopback address (--gossip real) and keeps a worker session with the
leader; its engine runs tasks instantly. Counters are printed every --every.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Join == "" || cfg.Token == "" || cfg.Nodes <= 0 {
				return fmt.Errorf("bench hollow needs --join, --token and --nodes")
			}
			switch hollow.GossipMode(gmode) {
			case hollow.GossipReal, hollow.GossipOff:
				cfg.Gossip = hollow.GossipMode(gmode)
			default:
				return fmt.Errorf("--gossip %q: use real or off", gmode)
			}
			cfg.Addr = hollow.AddrIn(prefix)
			if prof != "" {
				// Where the load generator's own time goes (go tool pprof).
				go func() { _ = http.ListenAndServe(prof, nil) }()
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f := hollow.New(cfg)
			defer f.Close()
			out := cmd.OutOrStdout()
			t0 := time.Now()
			if err := f.Start(ctx, 0, 0); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d hollow nodes joined in %s\n", cfg.Nodes, time.Since(t0).Round(time.Millisecond))
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
				s := f.Stats()
				fmt.Fprintf(out, "alive %d running %d answers %d reports %d bytes-in %d bytes-out %d\n",
					s.Alive, s.Running, s.Answers, s.Reports, s.BytesIn, s.BytesOut)
			}
		},
	}
	fl := c.Flags()
	fl.StringVar(&cfg.Join, "join", "", "a manager's API address, IP:PORT")
	fl.StringVar(&cfg.Token, "token", "", "a worker join token")
	fl.IntVar(&cfg.Nodes, "nodes", 0, "how many hollow nodes")
	fl.StringVar(&prefix, "addr-prefix", "127.81", "the /16 of loopback the nodes' addresses come from (A.B)")
	fl.IntVar(&cfg.PortBase, "port-base", 25100, "the port base the node records name (gossip listens at +2)")
	fl.StringVar(&gmode, "gossip", "real", "real: a memberlist member per node; off: none (managers with the liveness stand-in only)")
	fl.IntVar(&cfg.Parallel, "parallel", 32, "joins in flight")
	fl.DurationVar(&every, "every", 5*time.Second, "how often to print the counters")
	fl.StringVar(&prof, "pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)")
	return c
}
