// Package clusternet is this node's end of the cluster network: its container
// network on the engine, the overlay to the other hosts, the host's firewall,
// masquerade and service route, the DNS on the container gateway, and the
// removal of what nodes that are gone left on this host. It is fed the
// session's answers, as discovery is, and turns them into the plain tables and
// calls of cnet, the engine and dnsdisco.
package clusternet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/cnet"
	"github.com/swarmlet/swarmlet/cnet/ipam"
	"github.com/swarmlet/swarmlet/lb"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Names of what a node makes on its host, all derived from its ID so that
// several nodes can share a host and one can tell whose each thing is.
const (
	// TablePrefix starts every node's nftables table: swarmlet_NODEID.
	TablePrefix = "swarmlet_"
	// NetworkPrefix starts every node's container network: swarmlet-NODEID.
	NetworkPrefix = "swarmlet-"
	// DevicePrefix starts every node's vxlan device: swl-NODEID[:10] (a
	// device name holds 15 bytes).
	DevicePrefix = "swl-"
	// LabelCluster marks a node's container network with its cluster.
	LabelCluster = "swarmlet.cluster"

	// RepairInterval is how often the host's side is checked and repaired
	// (a deleted device or rule, a restarted dockerd) besides every change.
	RepairInterval = 30 * time.Second
)

// TableName is the nftables table of a node's balancer.
func TableName(nodeID string) string { return TablePrefix + nodeID }

// NetworkName is the container network of a node.
func NetworkName(nodeID string) string { return NetworkPrefix + nodeID }

// DeviceName is the vxlan device of a node.
func DeviceName(nodeID string) string {
	id := nodeID
	if len(id) > 10 {
		id = id[:10]
	}
	return DevicePrefix + id
}

func deviceAlias(cluster, node string) string {
	return "swarmlet cluster=" + cluster + " node=" + node
}

// ruleOwner names a node's firewall and masquerade rules: its ID, and its
// cluster, so another cluster's node on a shared host is never taken for one
// of ours that is gone.
func (n *Net) ruleOwner() string { return ownerOf(n.cfg.NodeID, n.cfg.ClusterID) }

func ownerOf(node, cluster string) string {
	if cluster == "" {
		return node
	}
	return node + " cluster=" + cluster
}

// DNS is what the node's DNS server offers this package.
type DNS interface {
	Listen(addr string) (string, error)
	SetRecursionFrom([]netip.Prefix)
}

// Config wires a node's cluster network.
type Config struct {
	NodeID    string
	ClusterID string
	Addr      netip.Addr         // advertise address: the overlay's underlay
	Plan      api.ClusterNetwork // pool and service range (defaults when empty)
	// Program says whether this node programs its host's network: the
	// overlay (when Addr is not loopback), the service range's route, and
	// with Docker its firewall opening and the masquerade. Off, only the
	// container network and the DNS on its gateway are set up.
	Program bool
	// Networker is the engine when it runs containers (Docker), else nil.
	Networker engine.Networker
	// DNS is the node's DNS server when it listens on port 53 (containers
	// can only be pointed at port 53), else nil. Zone is its zone, given to
	// containers as their search domain.
	DNS  DNS
	Zone string
	// Janitor removes the tables, networks and devices of this cluster's
	// nodes that no longer exist. It touches only things named and owned as
	// this package makes them.
	Janitor bool
	Logger  *slog.Logger
}

// Net is one node's cluster network.
type Net struct {
	cfg      Config
	log      *slog.Logger
	pool     netip.Prefix
	services netip.Prefix

	mu        sync.Mutex
	subnet    netip.Prefix
	overlay   *cnet.Overlay
	peers     *cnet.Table // last node table; nil before the first answer
	peersKey  string
	localErr  error // the last setup of the local side, nil when complete
	localDone bool
	nodesKey  string // node set the janitor last looked at
	closed    bool
}

// New checks cfg; it changes nothing on the host.
func New(cfg Config) (*Net, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Zone == "" {
		cfg.Zone = "swarmlet"
	}
	cfg.Zone = strings.TrimSuffix(cfg.Zone, ".")
	n := &Net{cfg: cfg, log: cfg.Logger, pool: ipam.DefaultPool}
	if p, err := netip.ParsePrefix(cfg.Plan.Pool); err == nil {
		n.pool = p
	}
	if p, err := netip.ParsePrefix(cfg.Plan.ServiceRange); err == nil {
		n.services = p
	} else if cfg.Plan.ServiceRange == "" {
		n.services = ipam.DefaultServiceRange
	}
	if !cfg.Addr.Is4() {
		return nil, fmt.Errorf("cluster network: the advertise address %v is not IPv4", cfg.Addr)
	}
	if cfg.DNS != nil {
		cfg.DNS.SetRecursionFrom(n.recursionFrom(netip.Prefix{}))
	}
	return n, nil
}

// recursionFrom is who may use the node's DNS as a resolver for the world:
// this host (loopback and its advertise address) and its own containers.
func (n *Net) recursionFrom(subnet netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.PrefixFrom(n.cfg.Addr, 32)}
	if subnet.IsValid() {
		out = append(out, subnet)
		// The host's own packets into the overlay leave from the VTEP.
		out = append(out, netip.PrefixFrom(cnet.VTEPAddr(subnet), 32))
	}
	return out
}

// Subnet is the node's subnet once known.
func (n *Net) Subnet() netip.Prefix {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.subnet
}

// Apply follows one session answer. It is called before the worker acts on
// the answer's tasks, so the container network is there when they start.
func (n *Net) Apply(ctx context.Context, as api.Assignments) {
	if as.Node == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	subnet, _ := netip.ParsePrefix(as.Node.Subnet)
	if subnet != n.subnet || !n.localDone {
		n.setupLocal(ctx, subnet)
	}
	n.hairpin()
	// The janitor goes first: a gone node's device may hold the VNI our
	// overlay needs, and then our device is made by this very sync.
	cleaned := n.cfg.Janitor && n.janitor(ctx, as.Nodes)
	t := peerTable(as.Nodes)
	if key := fmt.Sprint(t); key != n.peersKey || n.peers == nil || cleaned {
		n.peers = &t
		if n.syncOverlay(ctx) == nil {
			n.peersKey = key
		}
	}
}

// Run repairs the host's side every RepairInterval until ctx ends: a device,
// rule or network deleted behind our back comes back, as after a reboot.
func (n *Net) Run(ctx context.Context) {
	t := time.NewTicker(RepairInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		if !n.closed && n.subnet.IsValid() {
			n.setupLocal(ctx, n.subnet)
			_ = n.syncOverlay(ctx)
		}
		n.mu.Unlock()
	}
}

func peerTable(nodes []api.Node) cnet.Table {
	var t cnet.Table
	for _, m := range nodes {
		sub, err1 := netip.ParsePrefix(m.Subnet)
		addr, err2 := netip.ParseAddr(m.Addr)
		if err1 != nil || err2 != nil {
			continue
		}
		t.Peers = append(t.Peers, cnet.Peer{ID: m.ID, UnderlayIP: addr.Unmap(), Subnet: sub})
	}
	slices.SortFunc(t.Peers, func(a, b cnet.Peer) int { return strings.Compare(a.ID, b.ID) })
	return t
}

// setupLocal makes this node's own side match its subnet: the container
// network, the DNS on its gateway, the firewall, masquerade and route. Every
// step is idempotent; the first error is kept for the log and retried by Run.
func (n *Net) setupLocal(ctx context.Context, subnet netip.Prefix) {
	var errs []error
	if subnet != n.subnet && n.subnet.IsValid() {
		// The FSM never moves a node's subnet; a different one means the
		// node was removed and joined again, or its data is from elsewhere.
		n.log.Warn("this node's subnet changed", "was", n.subnet, "now", subnet)
		if n.overlay != nil {
			_ = n.overlay.Close(true)
			n.overlay = nil
		}
	}
	n.subnet = subnet
	if n.cfg.DNS != nil {
		n.cfg.DNS.SetRecursionFrom(n.recursionFrom(subnet))
	}
	var gw netip.Addr
	if subnet.IsValid() {
		gw = ipam.Gateway(subnet)
	}
	if n.cfg.Program && subnet.IsValid() {
		if n.services.IsValid() && !n.services.Addr().IsLoopback() {
			if err := cnet.EnsureServiceRoute(n.services, 0); err != nil {
				errs = append(errs, err)
			}
		}
		if n.overlay == nil && !n.cfg.Addr.IsLoopback() {
			o, err := cnet.New(cnet.Config{Device: DeviceName(n.cfg.NodeID), UnderlayIP: n.cfg.Addr, LocalSubnet: subnet,
				Alias: deviceAlias(n.cfg.ClusterID, n.cfg.NodeID), Logger: n.log})
			if err != nil {
				errs = append(errs, err)
			} else {
				n.overlay = o
			}
		}
	}
	if n.cfg.Networker != nil {
		cn := engine.Network{}
		if subnet.IsValid() {
			cn = engine.Network{Name: NetworkName(n.cfg.NodeID), Subnet: subnet, Gateway: gw, Masquerade: !n.cfg.Program,
				Labels: map[string]string{LabelCluster: n.cfg.ClusterID, engine.LabelNode: n.cfg.NodeID}}
			if n.overlay != nil {
				cn.MTU = n.overlay.MTU()
			}
			if n.cfg.DNS != nil {
				cn.DNS, cn.Search = []string{gw.String()}, []string{n.cfg.Zone}
			}
		}
		if err := n.cfg.Networker.SetNetwork(ctx, cn); err != nil {
			errs = append(errs, err)
		} else if subnet.IsValid() && n.cfg.DNS != nil {
			// The gateway address exists once Docker made the bridge.
			if _, err := n.cfg.DNS.Listen(net.JoinHostPort(gw.String(), "53")); err != nil {
				errs = append(errs, fmt.Errorf("DNS on the container gateway: %w", err))
			}
		}
		if n.cfg.Program && subnet.IsValid() {
			if err := cnet.AllowForward(n.pool, n.ruleOwner()); err != nil {
				errs = append(errs, err)
			}
			if err := cnet.AllowMasquerade(subnet, n.pool, n.ruleOwner()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	err := errors.Join(errs...)
	switch {
	case err != nil && (n.localErr == nil || n.localErr.Error() != err.Error()):
		n.log.Error("cluster network", "subnet", subnet, "err", err)
	case err == nil && !n.localDone:
		n.log.Info("cluster network ready", "subnet", subnet, "gateway", gw, "program", n.cfg.Program, "overlay", n.overlay != nil)
	}
	n.localErr, n.localDone = err, err == nil
}

// hairpin puts the container bridge's ports in hairpin mode, so a container
// whose call to a VIP comes back to itself is answered (see cnet.Hairpin).
// Apply runs it before the balancer follows the same answer, so a new task's
// port has it before the VIP sends it anything.
func (n *Net) hairpin() {
	if !n.cfg.Program || n.cfg.Networker == nil || !n.subnet.IsValid() || !n.localDone {
		return
	}
	if err := cnet.Hairpin(ipam.Gateway(n.subnet), 0); err != nil {
		n.log.Warn("hairpin mode on the container bridge", "err", err)
	}
}

func (n *Net) syncOverlay(ctx context.Context) error {
	if n.overlay == nil || n.peers == nil {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.overlay.Sync(sctx, *n.peers); err != nil {
		n.log.Warn("overlay sync", "err", err)
		return err
	}
	return nil
}

// janitor removes, once per change of the node set, what this cluster's
// nodes that no longer exist left on this host: nftables tables (which would
// DNAT VIPs and ports a new service may be given), container networks with
// the gone node's containers (which would hold its subnet, given out again),
// vxlan devices (which would hold the VNI and route their peers' subnets) and
// firewall and masquerade rules. Only things this cluster owns are touched:
// another cluster's on a shared host are left alone. It says whether it
// removed a device (the overlay must sync again).
func (n *Net) janitor(ctx context.Context, nodes []api.Node) bool {
	if n.cfg.ClusterID == "" || len(nodes) == 0 {
		return false
	}
	ids := make([]string, 0, len(nodes))
	exists := map[string]bool{n.cfg.NodeID: true}
	for _, m := range nodes {
		ids = append(ids, m.ID)
		exists[m.ID] = true
	}
	slices.Sort(ids)
	key := strings.Join(ids, ",")
	if key == n.nodesKey {
		return false
	}
	n.nodesKey = key
	keep := func(id string) bool { return exists[id] }
	if tables, err := lb.ListTables(lb.Config{}, TablePrefix); err == nil {
		for _, tb := range tables {
			id := strings.TrimPrefix(tb.Name, TablePrefix)
			if tb.Owner != n.cfg.ClusterID || keep(id) {
				continue
			}
			if err := lb.DeleteTable(lb.Config{}, tb.Name); err != nil {
				n.log.Warn("remove the nftables table of a node that is gone", "table", tb.Name, "err", err)
			} else {
				n.log.Info("removed the nftables table of a node that is gone", "table", tb.Name)
			}
		}
	}
	if n.cfg.Networker != nil {
		removed, err := n.cfg.Networker.PruneNetworks(ctx, LabelCluster, n.cfg.ClusterID, keep)
		for _, name := range removed {
			n.log.Info("removed the container network of a node that is gone", "network", name)
		}
		if err != nil {
			n.log.Warn("prune container networks", "err", err)
		}
	}
	if !n.cfg.Program {
		return false
	}
	if owners, err := cnet.RuleOwners(); err == nil {
		suffix := " cluster=" + n.cfg.ClusterID
		for _, o := range owners {
			id, ok := strings.CutSuffix(o, suffix)
			if !ok || keep(id) {
				continue
			}
			if err := cnet.RemoveRulesOf(o); err != nil {
				n.log.Warn("remove the firewall rules of a node that is gone", "node", id, "err", err)
			} else {
				n.log.Info("removed the firewall rules of a node that is gone", "node", id)
			}
		}
	}
	devs, err := cnet.Devices(DevicePrefix, 0)
	if err != nil {
		return false
	}
	removed := false
	prefix := "swarmlet cluster=" + n.cfg.ClusterID + " node="
	for _, d := range devs {
		id, ok := strings.CutPrefix(d.Alias, prefix)
		if !ok || keep(id) {
			continue
		}
		if err := cnet.RemoveDevice(d.Name, 0); err != nil {
			n.log.Warn("remove the overlay device of a node that is gone", "device", d.Name, "err", err)
		} else {
			n.log.Info("removed the overlay device of a node that is gone", "device", d.Name, "node", id)
			removed = true
		}
	}
	return removed
}

// Close ends this node's cluster network. On a plain stop (leave false)
// everything stays, so container traffic keeps flowing across a restart and
// the next start adopts it. On leave (the node's tasks already stopped) the
// overlay device, the firewall opening, the masquerade, the container network
// and the service range's route (unless another node of this host still
// needs it) go.
func (n *Net) Close(ctx context.Context, leave bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	if n.overlay != nil {
		errs = append(errs, n.overlay.Close(leave))
	}
	if !leave {
		return errors.Join(errs...)
	}
	if n.cfg.Networker != nil {
		errs = append(errs, n.cfg.Networker.RemoveNetwork(ctx, NetworkName(n.cfg.NodeID)))
		if n.cfg.Program && n.subnet.IsValid() {
			errs = append(errs, cnet.RemoveForward(n.pool, n.ruleOwner()), cnet.RemoveMasquerade(n.subnet, n.pool, n.ruleOwner()))
		}
	}
	if n.cfg.Program && n.services.IsValid() && !n.otherNodesHere() {
		errs = append(errs, cnet.RemoveServiceRoute(n.services, 0))
	}
	return errors.Join(errs...)
}

// otherNodesHere says whether another node's balancer table is on this host:
// that node still needs the service range's route.
func (n *Net) otherNodesHere() bool {
	tables, err := lb.ListTables(lb.Config{}, TablePrefix)
	if err != nil {
		return false
	}
	for _, tb := range tables {
		if tb.Name != TableName(n.cfg.NodeID) {
			return true
		}
	}
	return false
}
