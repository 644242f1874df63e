package engine

import (
	"context"
	"net/netip"
)

// Network is the node's container network on its engine: a network of the
// node's subnet of the cluster pool, which every task's container joins so
// that its address is routable from every node.
type Network struct {
	Name    string       // e.g. swarmlet-NODEID; "" means the engine's default network
	Subnet  netip.Prefix // the node's subnet
	Gateway netip.Addr   // the bridge's address: the subnet's first host address
	// MTU is the containers' MTU: the overlay's, so they never send a
	// packet the vxlan device cannot carry (0: the engine's default).
	MTU int
	// Masquerade leaves the engine's own source NAT of the subnet on. It is
	// off when the node programs the cluster network: the engine would also
	// rewrite traffic into the overlay, and the node masquerades only what
	// leaves the pool.
	Masquerade bool
	// DNS are the resolvers containers get (the node's DNS on the gateway)
	// and Search their search domains; nil keeps the engine's default.
	DNS    []string
	Search []string
	Labels map[string]string
}

// Networker is an engine whose workloads join the node's container network
// (docker; the process engine's tasks share the host's).
type Networker interface {
	// SetNetwork makes sure n exists on the engine as described and makes
	// every task started from now on join it. The first call also releases
	// Starts waiting for it; a zero Network means the engine's default.
	SetNetwork(ctx context.Context, n Network) error
	// RemoveNetwork deletes the node's network (leave, once its tasks are
	// stopped); a missing network is no error.
	RemoveNetwork(ctx context.Context, name string) error
	// PruneNetworks removes networks labelled owner=value (the cluster)
	// whose node label is not kept: networks of nodes that are gone, which
	// would hold their subnet on a shared engine. It returns their names.
	PruneNetworks(ctx context.Context, ownerLabel, owner string, keep func(nodeID string) bool) ([]string, error)
}
