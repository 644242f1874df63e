package node

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Default ports, offsets from --port-base so a whole cluster fits on one machine as
// 127.0.0.1, 127.0.0.2, ... with the same numbers.
const (
	DefaultPortBase = 4240
	offsetAPI       = 0
	offsetRaft      = 1
	offsetGossip    = 2
	DefaultDataDir  = "/var/lib/swarmlet"
	DefaultVIPPool  = "127.128.0.0/16" // inside loopback: an unmatched VIP packet never leaves the host
)

// Config is everything the daemon needs; cmd maps flags onto it.
type Config struct {
	DataDir         string
	AdvertiseAddr   string
	PortBase        int
	DNSPort         int
	Engine          string // auto|docker|process
	Availability    api.Availability
	LB              string // auto|ipvs|nftables|userspace
	VIPPool         string
	DNSUpstreams    []string
	Hostname        string
	Init            bool
	ForceNewCluster bool
	JoinAddr        string // MANAGER_ADDR[:PORT]
	Token           string
	// RestartGrace (init only): how long the tasks of a node that said it is
	// restarting are kept (nil: api.DefaultRestartGrace; 0: not at all).
	RestartGrace *time.Duration
	Logger       *slog.Logger
	// Out receives the few lines meant for the operator (join commands).
	Out func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = "127.0.0.1"
	}
	if c.PortBase == 0 {
		c.PortBase = DefaultPortBase
	}
	if c.Engine == "" {
		c.Engine = "auto"
	}
	if c.Availability == "" {
		c.Availability = api.AvailabilityActive
	}
	if c.LB == "" {
		c.LB = "auto"
	}
	if c.VIPPool == "" {
		c.VIPPool = DefaultVIPPool
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Out == nil {
		c.Out = func(string, ...any) {}
	}
}

// Validate checks the flags before anything touches the data dir.
func (c *Config) Validate() error {
	c.setDefaults()
	ip := net.ParseIP(c.AdvertiseAddr)
	if ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("invalid --advertise-addr %q: give the IP address other nodes reach this one on", c.AdvertiseAddr)
	}
	if c.PortBase < 1 || c.PortBase > 65533 {
		return fmt.Errorf("invalid --port-base %d: must be 1-65533", c.PortBase)
	}
	if c.DNSPort < 0 || c.DNSPort > 65535 {
		return fmt.Errorf("invalid --dns-port %d", c.DNSPort)
	}
	switch c.Engine {
	case "auto", "docker", "process":
	default:
		return fmt.Errorf("invalid --engine %q: use auto, docker or process", c.Engine)
	}
	switch c.LB {
	case "auto", "ipvs", "nftables", "userspace", "none":
	default:
		return fmt.Errorf("invalid --lb %q: use auto, ipvs, nftables or userspace", c.LB)
	}
	switch c.Availability {
	case api.AvailabilityActive, api.AvailabilityDrain, api.AvailabilityPause:
	default:
		return fmt.Errorf("invalid --availability %q: use active, pause or drain", c.Availability)
	}
	if c.RestartGrace != nil && *c.RestartGrace < 0 {
		return fmt.Errorf("invalid --restart-grace %s: give a duration of 0 or more", *c.RestartGrace)
	}
	if !c.Init && c.JoinAddr == "" {
		return fmt.Errorf("join needs a manager address")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	return nil
}

func (c *Config) apiAddr() string {
	return net.JoinHostPort(c.AdvertiseAddr, fmt.Sprint(c.PortBase+offsetAPI))
}
func (c *Config) raftAddr() string {
	return net.JoinHostPort(c.AdvertiseAddr, fmt.Sprint(c.PortBase+offsetRaft))
}
func (c *Config) gossipPort() int    { return c.PortBase + offsetGossip }
func (c *Config) socketPath() string { return filepath.Join(c.DataDir, "swarmlet.sock") }

// SocketPath is where the daemon with this data dir listens for the CLI.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "swarmlet.sock") }

// APIAddr is a node's TCP API address.
func APIAddr(n *api.Node) string { return net.JoinHostPort(n.Addr, fmt.Sprint(n.APIPort)) }
