package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/swarmlet/swarmlet/node/engine"
)

// The node's container network: a Docker bridge network of the node's subnet,
// which every task's container joins (and no other), so its address is one
// of the cluster pool, routable from every node.
//
// Docker options on it:
//   - com.docker.network.bridge.enable_ip_masquerade=false when the node
//     programs the cluster network: Docker's rule would also rewrite traffic
//     into the vxlan device (see cnet's DESIGN.md); the node masquerades
//     only what leaves the pool.
//   - com.docker.network.driver.mtu: the overlay's MTU.
//
// Containers on a user-defined network get Docker's embedded resolver
// (127.0.0.11), which answers container names of that network and forwards
// everything else to the DNS servers given at create: only the node's own
// DNS, on the gateway. So `web`, `web.swarmlet` and `tasks.web` resolve.

const (
	optMasquerade = "com.docker.network.bridge.enable_ip_masquerade"
	optMTU        = "com.docker.network.driver.mtu"
)

// netState is what Start needs of the network, set by SetNetwork.
type netState struct {
	mu    sync.Mutex
	ready chan struct{} // closed by the first SetNetwork
	set   bool
	cur   engine.Network
}

func (s *netState) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready == nil {
		s.ready = make(chan struct{})
	}
}

// current waits (bounded by ctx and at most wait) for the first SetNetwork.
func (s *netState) current(ctx context.Context, wait time.Duration) (engine.Network, error) {
	s.init()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.ready:
	case <-ctx.Done():
		return engine.Network{}, ctx.Err()
	case <-t.C:
		return engine.Network{}, errors.New("this node's container network is not set up yet (the node has not learned its subnet, or creating its Docker network failed: see the node's log)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, nil
}

func (s *netState) store(n engine.Network) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = n
	if !s.set {
		s.set = true
		close(s.ready)
	}
}

// SetNetwork implements engine.Networker. An existing network of that name
// is adopted when it matches; one with another subnet, gateway or options is
// recreated if no container uses it, else kept (with a warning), so that a
// restart never cuts running tasks off.
func (e *Engine) SetNetwork(ctx context.Context, n engine.Network) error {
	if n.Name == "" {
		e.net.store(n)
		return nil
	}
	if !n.Subnet.Addr().Is4() || !n.Subnet.Contains(n.Gateway) {
		return fmt.Errorf("container network %s: subnet %v with gateway %v is not a valid IPv4 network", n.Name, n.Subnet, n.Gateway)
	}
	opts := networkOptions(n)
	have, err := e.cli.NetworkInspect(ctx, n.Name, network.InspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("container network %s: inspect: %w", n.Name, err)
	default:
		why := networkDiffers(have, n, opts)
		if why == "" {
			e.net.store(n)
			return nil
		}
		if len(have.Containers) > 0 {
			e.log.Warn("container network differs but containers use it; keeping it", "network", n.Name, "reason", why, "containers", len(have.Containers))
			e.net.store(n)
			return nil
		}
		e.log.Info("recreating container network", "network", n.Name, "reason", why)
		if err := e.cli.NetworkRemove(ctx, have.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container network %s: remove the outdated one: %w", n.Name, err)
		}
	}
	_, err = e.cli.NetworkCreate(ctx, n.Name, network.CreateOptions{
		Driver:  "bridge",
		IPAM:    &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: n.Subnet.String(), Gateway: n.Gateway.String()}}},
		Options: opts,
		Labels:  n.Labels,
	})
	if err != nil {
		// Most often another network holds the subnet: on a shared engine,
		// another cluster's or a node's that is gone.
		return fmt.Errorf("create container network %s (%v): %w; if another Docker network uses that subnet, remove it (docker network ls, docker network rm)", n.Name, n.Subnet, err)
	}
	e.log.Info("container network created", "network", n.Name, "subnet", n.Subnet, "gateway", n.Gateway, "mtu", n.MTU, "masquerade", n.Masquerade)
	e.net.store(n)
	return nil
}

func networkOptions(n engine.Network) map[string]string {
	opts := map[string]string{optMasquerade: strconv.FormatBool(n.Masquerade)}
	if n.MTU > 0 {
		opts[optMTU] = strconv.Itoa(n.MTU)
	}
	return opts
}

// networkDiffers says why an existing network cannot serve as n, or "".
func networkDiffers(have network.Inspect, n engine.Network, opts map[string]string) string {
	if have.Driver != "bridge" {
		return "driver " + have.Driver
	}
	if len(have.IPAM.Config) != 1 {
		return fmt.Sprintf("%d address ranges", len(have.IPAM.Config))
	}
	c := have.IPAM.Config[0]
	if p, err := netip.ParsePrefix(c.Subnet); err != nil || p != n.Subnet {
		return "subnet " + c.Subnet
	}
	if g, err := netip.ParseAddr(c.Gateway); err != nil || g != n.Gateway {
		return "gateway " + c.Gateway
	}
	for k, v := range opts {
		got, ok := have.Options[k]
		if k == optMasquerade && !ok {
			got = "true" // Docker's default
		}
		if got != v {
			return fmt.Sprintf("option %s=%q", k, got)
		}
	}
	if have.Options[optMTU] != "" && opts[optMTU] == "" {
		return "option " + optMTU
	}
	for k, v := range n.Labels {
		if have.Labels[k] != v {
			return "label " + k
		}
	}
	return ""
}

// RemoveNetwork implements engine.Networker.
func (e *Engine) RemoveNetwork(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	// The node's tasks are stopped before it leaves, yet Docker may still hold
	// the endpoint of a container it just removed for a moment (seen on 20.10:
	// "has active endpoints" right after the remove returned), or a late start
	// may have attached one: this node's own containers serve no one any more,
	// and a stale endpoint is let go by a forced disconnect.
	wait := 50 * time.Millisecond
	for {
		err := e.cli.NetworkRemove(ctx, name)
		if err == nil || cerrdefs.IsNotFound(err) {
			break
		}
		if !strings.Contains(err.Error(), "active endpoints") {
			return fmt.Errorf("remove container network %s: %w", name, err)
		}
		if rerr := e.releaseEndpoints(ctx, name); rerr != nil {
			return fmt.Errorf("remove container network %s: %w (%w)", name, err, rerr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove container network %s: %w", name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
	e.log.Info("container network removed", "network", name)
	return nil
}

// releaseEndpoints removes this node's containers still on its network and
// disconnects endpoints whose container is gone.
func (e *Engine) releaseEndpoints(ctx context.Context, networkName string) error {
	if err := e.removeContainersOf(ctx, networkName, e.cfg.NodeID); err != nil {
		return err
	}
	have, err := e.cli.NetworkInspect(ctx, networkName, network.InspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container network %s: %w", networkName, err)
	}
	for id := range have.Containers {
		if _, err := e.cli.ContainerInspect(ctx, id); !cerrdefs.IsNotFound(err) {
			continue // a container of someone else's: named by the final error
		}
		if err := e.cli.NetworkDisconnect(ctx, networkName, id, true); err != nil && !cerrdefs.IsNotFound(err) {
			e.log.Warn("disconnect a stale endpoint", "network", networkName, "endpoint", shortID(id), "err", err)
		}
	}
	return nil
}

// PruneNetworks implements engine.Networker. The gone node's own containers
// still on its network (a node removed while its daemon was down leaves its
// tasks running) are removed with it: they serve no one, and the network
// would otherwise hold the node's subnet, which the cluster gives out again.
// A network also used by other containers is left, and named in the error.
func (e *Engine) PruneNetworks(ctx context.Context, ownerLabel, owner string, keep func(nodeID string) bool) ([]string, error) {
	if owner == "" {
		return nil, nil
	}
	nets, err := e.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", ownerLabel+"="+owner))})
	if err != nil {
		return nil, fmt.Errorf("list container networks: %w", err)
	}
	var removed []string
	var errs []error
	for _, n := range nets {
		node := n.Labels[engine.LabelNode]
		if node == "" || node == e.cfg.NodeID || keep(node) {
			continue
		}
		if err := e.removeContainersOf(ctx, n.ID, node); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := e.cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container network %s of node %s, which is gone: %w", n.Name, node, err))
			continue
		}
		removed = append(removed, n.Name)
	}
	return removed, errors.Join(errs...)
}

// removeContainersOf force-removes the containers of node attached to network.
func (e *Engine) removeContainersOf(ctx context.Context, networkID, node string) error {
	have, err := e.cli.NetworkInspect(ctx, networkID, network.InspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container network %s: %w", networkID, err)
	}
	for id := range have.Containers {
		info, err := e.cli.ContainerInspect(ctx, id)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("inspect container %s: %w", shortID(id), err)
		}
		if info.Config == nil || info.Config.Labels[engine.LabelNode] != node {
			continue
		}
		if err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove container %s of node %s, which is gone: %w", shortID(id), node, err)
		}
		e.log.Info("removed a container of a node that is gone", "container", shortID(id), "node", node, "task", info.Config.Labels[engine.LabelTask])
	}
	return nil
}

// networkName is the node's network once set ("" before, or for the default).
func (e *Engine) networkName() string {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	return e.net.cur.Name
}

// attach fills in the network part of a container's config.
func (e *Engine) attach(n engine.Network) (mode string, endpoints map[string]*network.EndpointSettings, dns, search []string) {
	if n.Name == "" {
		return "", nil, nil, nil
	}
	return n.Name, map[string]*network.EndpointSettings{n.Name: {}}, n.DNS, n.Search
}

var _ engine.Networker = (*Engine)(nil)
