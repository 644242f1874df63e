package node

import (
	"net/netip"

	"github.com/swarmlet/swarmlet/cnet/ipam"
	"github.com/swarmlet/swarmlet/dnsdisco"
	"github.com/swarmlet/swarmlet/node/clusternet"
	"github.com/swarmlet/swarmlet/node/engine"
)

// The wiring of this node's end of the cluster network (node/clusternet).

// programsHost says whether this node programs its host's network for the
// cluster (--cluster-network). auto does unless the advertise address is
// loopback: nodes on loopback addresses all share this machine (tests, a
// one-machine try-out), and then a daemon changes nothing on the host's
// network unless asked with `on`.
func (c *Config) programsHost() bool {
	switch c.ClusterNetwork {
	case NetworkOn:
		return true
	case NetworkOff:
		return false
	}
	a, err := netip.ParseAddr(c.AdvertiseAddr)
	return err == nil && !a.IsLoopback()
}

// keepSource is what the balancer leaves unmasqueraded: connections from
// the container pool to containers on other hosts, through this node's
// overlay device (none when it has no overlay).
func (d *Daemon) keepSource() (netip.Prefix, string) {
	a, err := netip.ParseAddr(d.cfg.AdvertiseAddr)
	if err != nil || a.IsLoopback() || !d.cfg.programsHost() {
		return netip.Prefix{}, ""
	}
	pool, err := netip.ParsePrefix(d.id.Network.Pool)
	if err != nil {
		pool = ipam.DefaultPool
	}
	return pool, clusternet.DeviceName(d.id.NodeID)
}

func (d *Daemon) newClusterNet(eng engine.Engine, dns *dnsdisco.Server) (*clusternet.Net, error) {
	addr, _ := netip.ParseAddr(d.cfg.AdvertiseAddr)
	cfg := clusternet.Config{
		NodeID: d.id.NodeID, ClusterID: d.id.ClusterID, Addr: addr.Unmap(), Plan: d.id.Network,
		Program: d.cfg.programsHost(), Janitor: true, Logger: d.log.With("component", "clusternet"),
	}
	if nw, ok := eng.(engine.Networker); ok {
		cfg.Networker = nw
	}
	if dns != nil {
		cfg.DNS = dns
	}
	return clusternet.New(cfg)
}
