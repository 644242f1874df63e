package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node"
	"github.com/swarmlet/swarmlet/node/pki"
)

func daemonFlags(c *cobra.Command, cfg *node.Config) *string {
	f := c.Flags()
	f.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "127.0.0.1", "IP address other nodes reach this node on; every port binds here")
	f.StringVar(&cfg.DataDir, "data-dir", node.DefaultDataDir, "directory holding this node's identity and state")
	f.StringVar(&cfg.Engine, "engine", "auto", "what runs tasks: auto, docker or process")
	avail := f.String("availability", "active", "active, pause or drain")
	f.IntVar(&cfg.PortBase, "port-base", node.DefaultPortBase, "API port; Raft uses +1 and gossip +2")
	f.IntVar(&cfg.DNSPort, "dns-port", 53, "port of the built-in DNS server (0 disables it)")
	f.StringVar(&cfg.LB, "lb", "auto", "load balancer: auto, ipvs, nftables or userspace")
	f.StringVar(&cfg.Pool, "pool", node.DefaultPool, "CIDR container addresses come from; each node gets a subnet of it (init only)")
	f.IntVar(&cfg.SubnetBits, "subnet-bits", node.DefaultSubnetBits, "prefix length of each node's subnet of --pool (init only)")
	f.StringVar(&cfg.ServiceRange, "service-range", node.DefaultServiceRange, "routable CIDR service VIPs come from (init only)")
	f.StringVar(&cfg.ServiceRange, "vip-pool", node.DefaultServiceRange, "old name of --service-range")
	_ = f.MarkDeprecated("vip-pool", "use --service-range")
	f.StringVar(&cfg.ClusterNetwork, "cluster-network", node.NetworkAuto, "program this host's network for the cluster (overlay to other hosts, Docker's firewall, the service range's route): auto (unless the advertise address is loopback), on or off")
	f.StringSliceVar(&cfg.DNSUpstreams, "dns-upstream", nil, "resolvers for names outside the cluster (default: /etc/resolv.conf)")
	f.StringVar(&cfg.Hostname, "hostname", "", "name shown for this node (default: the host name)")
	logLevel := f.String("log-level", "info", "debug, info, warn or error")
	engineLabels := f.StringArray("engine-label", nil, "an engine label K=V for engine.labels.K constraints, added to what the engine reports (docker info's Labels)")
	c.PreRunE = func(*cobra.Command, []string) error {
		cfg.Availability = api.Availability(*avail)
		for _, kv := range *engineLabels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("invalid --engine-label %q: expected KEY=VALUE", kv)
			}
			if cfg.EngineLabels == nil {
				cfg.EngineLabels = map[string]string{}
			}
			cfg.EngineLabels[k] = v
		}
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
			return fmt.Errorf("invalid --log-level %q", *logLevel)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
		cfg.Out = func(format string, args ...any) { fmt.Fprintf(os.Stdout, format, args...) }
		return nil
	}
	return avail
}

func runDaemon(cfg node.Config) error {
	d, err := node.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := cmdContext()
	defer cancel()
	if addr := os.Getenv("SWARMLET_PPROF"); addr != "" {
		// Profiling a daemon under a benchmark (go tool pprof http://ADDR/debug/pprof/profile).
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
	return d.Run(ctx)
}

func newInitCmd() *cobra.Command {
	var cfg node.Config
	c := &cobra.Command{
		Use:   "init",
		Short: "Start the first manager of a new cluster (or resume this data dir's node)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg.Init = true
			return runDaemon(cfg)
		},
	}
	daemonFlags(c, &cfg)
	c.Flags().BoolVar(&cfg.ForceNewCluster, "force-new-cluster", false, "recover from lost quorum: restart this manager as the only voter, keeping the state")
	c.Flags().BoolVar(&cfg.Autolock, "autolock", false, "encrypt managers' Raft data key with an unlock key printed once; a restarted manager waits for 'swarmlet unlock'")
	c.Flags().DurationVar(&cfg.CertExpiry, "cert-expiry", pki.DefaultCertExpiry, "lifetime of node and operator certificates (renewed automatically at 50-80%)")
	grace := c.Flags().Duration("restart-grace", api.DefaultRestartGrace,
		"how long the tasks of a node whose daemon is restarting are kept before they are replaced elsewhere (cluster-wide; 0: never kept)")
	cfg.RestartGrace = grace // filled in when the flags are parsed
	return c
}

func newJoinCmd() *cobra.Command {
	var cfg node.Config
	c := &cobra.Command{
		Use:   "join --token TOKEN MANAGER_ADDR[:PORT]",
		Short: "Start a node that joins an existing cluster (or resume this data dir's node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg.JoinAddr = args[0]
			return runDaemon(cfg)
		},
	}
	daemonFlags(c, &cfg)
	c.Flags().StringVar(&cfg.Token, "token", "", "join token from 'swarmlet join-token worker|manager'")
	return c
}
