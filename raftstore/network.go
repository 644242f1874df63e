package raftstore

import (
	"fmt"
	"net/netip"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/cnet/ipam"
)

// The cluster network's share of the FSM: the address plan fixed at init and
// each node's subnet of the container pool. Subnets are allocated here, inside
// Apply, by ipam.AllocateSubnet, a pure function of the node table: every
// manager picks the same subnet for the same log, and a removed node's subnet
// is free again because allocation only looks at the nodes that exist.

// Plan is the cluster's address plan with the defaults filled in. A cluster
// initialised before the cluster network existed has no pool recorded; it
// gets the default pool, and nodes that cannot have a subnet of it are still
// admitted (without one), so an old log replays as it always did.
func (c *Cluster) Plan() (pool netip.Prefix, bits int, services netip.Prefix) {
	pool, bits = ipam.DefaultPool, ipam.DefaultNodeBits
	if p, err := netip.ParsePrefix(c.Pool); err == nil {
		pool = p
	}
	if c.SubnetBits != 0 {
		bits = c.SubnetBits
	}
	services, _ = netip.ParsePrefix(c.ServiceRange)
	return pool, bits, services
}

// Network is the plan as the API shows it, defaults filled in.
func (c *Cluster) Network() api.ClusterNetwork {
	pool, bits, services := c.Plan()
	n := api.ClusterNetwork{Pool: pool.String(), SubnetBits: bits, ServiceRange: c.ServiceRange}
	if services.IsValid() {
		n.ServiceRange = services.String()
	}
	return n
}

// strictPlan says whether the cluster was initialised with an explicit plan,
// whose rules (a subnet for every node, no node address inside the pool) the
// FSM then enforces.
func (c *Cluster) strictPlan() bool { return c.Pool != "" }

// checkPlan vets an init's address plan. An init without a pool is one
// written before the cluster network and is accepted as it was.
func checkPlan(n api.ClusterNetwork) error {
	if n.Pool == "" {
		return nil
	}
	pool, err := netip.ParsePrefix(n.Pool)
	if err != nil {
		return fmt.Errorf("container pool %q is not a CIDR: %w", n.Pool, ErrInvalid)
	}
	services, err := netip.ParsePrefix(n.ServiceRange)
	if err != nil {
		return fmt.Errorf("service range %q is not a CIDR: %w", n.ServiceRange, ErrInvalid)
	}
	if err := ipam.ValidatePlan(pool, n.SubnetBits, services); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// assignSubnet gives n its subnet: the one it already has (the node record a
// restarting node sends never carries it: the FSM owns it), else the lowest
// free subnet of the pool. With an explicit plan a node whose address lies in
// the pool or the service range, or a join when the pool is full, is refused.
func assignSubnet(txn *memdb.Txn, cl *Cluster, n, old *api.Node) error {
	n.Subnet = ""
	if old != nil {
		n.Subnet = old.Subnet
	}
	if cl == nil {
		return nil
	}
	pool, bits, services := cl.Plan()
	strict := cl.strictPlan()
	if addr, err := netip.ParseAddr(n.Addr); err == nil && strict {
		self := ipam.AddrRange(fmt.Sprintf("node %s's address", n.ID), addr)
		if err := ipam.CheckDisjoint(pool, self); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if services.IsValid() && services.Contains(addr) {
			return fmt.Errorf("node %s's address %s is inside the service range %s: give the node an address outside it: %w", n.ID, addr, services, ErrInvalid)
		}
	}
	if n.Subnet != "" {
		return nil
	}
	var taken []netip.Prefix
	it, _ := txn.Get(tableNodes, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*api.Node)
		if p, err := netip.ParsePrefix(o.Subnet); err == nil && o.ID != n.ID {
			taken = append(taken, p)
		}
	}
	sub, err := ipam.AllocateSubnet(pool, bits, taken)
	if err != nil {
		if !strict {
			return nil // an old cluster admits the node without a subnet, as before
		}
		return fmt.Errorf("node %s cannot join: %w: %w", n.ID, err, ErrInvalid)
	}
	n.Subnet = sub.String()
	return nil
}
