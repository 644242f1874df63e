package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/cnet/ipam"
	"github.com/swarmlet/swarmlet/node/pki"
)

// Default ports, offsets from --port-base so a whole cluster fits on one machine as
// 127.0.0.1, 127.0.0.2, ... with the same numbers.
const (
	DefaultPortBase = 4240
	offsetAPI       = 0
	offsetRaft      = 1
	offsetGossip    = 2
	DefaultDataDir  = "/var/lib/swarmlet"
)

// The cluster's default address plan (cnet's defaults, k3s's numbers).
var (
	DefaultPool         = ipam.DefaultPool.String()
	DefaultSubnetBits   = ipam.DefaultNodeBits
	DefaultServiceRange = ipam.DefaultServiceRange.String()
)

// Cluster network modes (--cluster-network).
const (
	NetworkAuto = "auto"
	NetworkOn   = "on"
	NetworkOff  = "off"
)

// Config is everything the daemon needs; cmd maps flags onto it.
type Config struct {
	DataDir       string
	AdvertiseAddr string
	PortBase      int
	DNSPort       int
	Engine        string // auto|docker|process
	Availability  api.Availability
	LB            string // auto|ipvs|nftables|userspace
	// The address plan, used by init only: the container pool, the length of
	// each node's subnet of it, and the range service VIPs come from.
	Pool         string
	SubnetBits   int
	ServiceRange string
	// ClusterNetwork says whether this node programs its host's network for
	// the cluster (see clusterNetworkOn): auto|on|off.
	ClusterNetwork  string
	DNSUpstreams    []string
	Hostname        string
	Init            bool
	ForceNewCluster bool
	JoinAddr        string // MANAGER_ADDR[:PORT]
	Token           string
	// CertExpiry is the lifetime of the certificates the cluster's CA issues (init
	// only; 0: pki.DefaultCertExpiry).
	CertExpiry time.Duration
	// Autolock wraps every manager's Raft data key with an unlock key the operator
	// must give after each restart (init only).
	Autolock bool
	// RestartGrace (init only): how long the tasks of a node that said it is
	// restarting are kept (nil: api.DefaultRestartGrace; 0: not at all).
	RestartGrace *time.Duration
	// EngineLabels are this node's engine labels beyond what its engine reports
	// (docker info's Labels), for engine.labels.* constraints: the process
	// engine has none of its own (--engine-label, as dockerd's --label).
	EngineLabels map[string]string
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
	if c.Pool == "" {
		c.Pool = DefaultPool
	}
	if c.SubnetBits == 0 {
		c.SubnetBits = DefaultSubnetBits
	}
	if c.ServiceRange == "" {
		c.ServiceRange = DefaultServiceRange
	}
	if c.ClusterNetwork == "" {
		c.ClusterNetwork = NetworkAuto
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
	switch c.ClusterNetwork {
	case NetworkAuto, NetworkOn, NetworkOff:
	default:
		return fmt.Errorf("invalid --cluster-network %q: use auto, on or off", c.ClusterNetwork)
	}
	if c.CertExpiry != 0 && c.CertExpiry < pki.MinCertExpiry {
		return fmt.Errorf("invalid --cert-expiry %s: at least %s (renewal runs at 50-80%% of it)", c.CertExpiry, pki.MinCertExpiry)
	}
	if c.RestartGrace != nil && *c.RestartGrace < 0 {
		return fmt.Errorf("invalid --restart-grace %s: give a duration of 0 or more", *c.RestartGrace)
	}
	if !c.Init && c.JoinAddr == "" {
		return fmt.Errorf("join needs a manager address")
	}
	if c.Init {
		if _, err := c.plan(); err != nil {
			return err
		}
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	return nil
}

// plan checks the address plan given to init, against this node's own
// address too, before anything is created.
func (c *Config) plan() (api.ClusterNetwork, error) {
	pool, err := netip.ParsePrefix(c.Pool)
	if err != nil {
		return api.ClusterNetwork{}, fmt.Errorf("invalid --pool %q: give a CIDR such as %s", c.Pool, DefaultPool)
	}
	services, err := netip.ParsePrefix(c.ServiceRange)
	if err != nil {
		return api.ClusterNetwork{}, fmt.Errorf("invalid --service-range %q: give a CIDR such as %s", c.ServiceRange, DefaultServiceRange)
	}
	var others []ipam.Range
	if a, err := netip.ParseAddr(c.AdvertiseAddr); err == nil {
		others = append(others, ipam.AddrRange("this node's --advertise-addr", a.Unmap()))
	}
	if err := ipam.ValidatePlan(pool, c.SubnetBits, services, others...); err != nil {
		return api.ClusterNetwork{}, fmt.Errorf("invalid address plan: %w", err)
	}
	return api.ClusterNetwork{Pool: pool.String(), SubnetBits: c.SubnetBits, ServiceRange: services.String()}, nil
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
