package docker

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"

	"github.com/swarmlet/swarmlet/internal/testlog"
	"github.com/swarmlet/swarmlet/node/engine"
)

// testSubnet is a subnet for this run's networks on the shared engine, in
// 10.65.0.0/16 (this package's range), varied per run so that two runs on one
// engine rarely meet.
func testSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 65, subnetBase + byte(i), 0}), 24)
}

var subnetBase = byte(time.Now().UnixNano() / 1e6 % 200)

func testNetwork(t *testing.T, e *Engine, subnet netip.Prefix) engine.Network {
	t.Helper()
	n := engine.Network{Name: "swarmlet-test-" + runID + "-" + e.cfg.NodeID, Subnet: subnet, Gateway: subnet.Addr().Next(), MTU: 1400,
		DNS: []string{subnet.Addr().Next().String()}, Search: []string{"swarmlet"},
		Labels: map[string]string{testLabel: runID, engine.LabelNode: e.cfg.NodeID}}
	t.Cleanup(func() {
		sweep(testCLI, e.cfg.NodeID)
		_ = testCLI.NetworkRemove(context.Background(), n.Name)
	})
	return n
}

// A task joins the node's network: its address is of the node's subnet, its
// resolver is the node's (through Docker's embedded one), the network has the
// MTU and no masquerade; the network is adopted as it is, and removed on leave.
func TestNodeNetwork(t *testing.T) {
	e := newEngine(t, "net")
	ctx := context.Background()
	n := testNetwork(t, e, testSubnet(0))
	if err := e.SetNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	have, err := testCLI.NetworkInspect(ctx, n.Name, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if have.Options[optMasquerade] != "false" || have.Options[optMTU] != "1400" || have.IPAM.Config[0].Subnet != n.Subnet.String() || have.IPAM.Config[0].Gateway != n.Gateway.String() {
		t.Fatalf("network %+v options %v", have.IPAM, have.Options)
	}
	task := whoamiTask("t-net", 1)
	inst, err := e.Start(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := netip.ParseAddr(inst.Addr); err != nil || !n.Subnet.Contains(a) || a == n.Gateway {
		t.Fatalf("task address %q is not a container address of %v", inst.Addr, n.Subnet)
	}
	info, err := testCLI.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.HostConfig.DNS, n.DNS) || !slices.Equal(info.HostConfig.DNSSearch, n.Search) || string(info.HostConfig.NetworkMode) != n.Name {
		t.Fatalf("container DNS %v search %v network %s", info.HostConfig.DNS, info.HostConfig.DNSSearch, info.HostConfig.NetworkMode)
	}
	if _, ok := info.NetworkSettings.Networks["bridge"]; ok {
		t.Fatal("the container is on Docker's default bridge too")
	}
	if listed, ok := find(t, e, task.ID); !ok || listed.Addr != inst.Addr {
		t.Fatalf("listed %+v", listed)
	}

	// A restart's SetNetwork adopts the network; a changed one in use is kept.
	if err := e.SetNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	changed := n
	changed.MTU = 1300
	if err := e.SetNetwork(ctx, changed); err != nil {
		t.Fatal(err)
	}
	again, err := testCLI.NetworkInspect(ctx, n.Name, network.InspectOptions{})
	if err != nil || again.ID != have.ID {
		t.Fatalf("network replaced under a running container: %v", err)
	}
	// Unused, a changed network is recreated; on leave it is removed.
	if err := e.Stop(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.SetNetwork(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if again, err := testCLI.NetworkInspect(ctx, n.Name, network.InspectOptions{}); err != nil || again.ID == have.ID || again.Options[optMTU] != "1300" {
		t.Fatalf("unused changed network not recreated: %v %v", err, again.Options)
	}
	if err := e.RemoveNetwork(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveNetwork(ctx, n.Name); err != nil {
		t.Fatalf("second RemoveNetwork: %v", err)
	}
	if _, err := testCLI.NetworkInspect(ctx, n.Name, network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("network still there: %v", err)
	}
}

// Two nodes on one engine each have their own network; a subnet held by
// another network is refused with what to do; networks of nodes that are
// gone are pruned with their containers, the others kept.
func TestNetworksSharedEngine(t *testing.T) {
	a, b := newEngine(t, "na"), newEngine(t, "nb")
	ctx := context.Background()
	na, nb := testNetwork(t, a, testSubnet(1)), testNetwork(t, b, testSubnet(2))
	na.Labels["swarmlet.cluster"], nb.Labels["swarmlet.cluster"] = runID, runID
	for _, x := range []struct {
		e *Engine
		n engine.Network
	}{{a, na}, {b, nb}} {
		if err := x.e.SetNetwork(ctx, x.n); err != nil {
			t.Fatal(err)
		}
	}
	// b is then gone with a task still running on its network.
	gone, err := b.Start(ctx, whoamiTask("t-gone", 1))
	if err != nil {
		t.Fatal(err)
	}
	clash := nb
	clash.Name += "-clash"
	t.Cleanup(func() { _ = testCLI.NetworkRemove(context.Background(), clash.Name) })
	if err := a.SetNetwork(ctx, clash); err == nil || !strings.Contains(err.Error(), "docker network rm") {
		t.Fatalf("a network on a taken subnet: %v", err)
	}
	removed, err := a.PruneNetworks(ctx, "swarmlet.cluster", runID, func(node string) bool { return node == a.cfg.NodeID })
	if err != nil || !slices.Equal(removed, []string{nb.Name}) {
		t.Fatalf("PruneNetworks = %v, %v; want [%s]", removed, err, nb.Name)
	}
	if _, err := testCLI.NetworkInspect(ctx, na.Name, network.InspectOptions{}); err != nil {
		t.Fatalf("a's own network was pruned: %v", err)
	}
	if _, err := testCLI.ContainerInspect(ctx, gone.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the gone node's container on its network is still there: %v", err)
	}
}

// Start waits for the node's network, and says what it waits for.
func TestStartWaitsForNetwork(t *testing.T) {
	requireDocker(t)
	e, err := New(engine.Config{NodeID: "wait-" + runID, NodeAddr: "127.0.0.1", DataDir: t.TempDir()}, testlog.New(t, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.NetworkWait = 200 * time.Millisecond
	_, err = e.Start(context.Background(), whoamiTask("t-wait", 1))
	if err == nil || !strings.Contains(err.Error(), "container network is not set up yet") {
		t.Fatalf("Start without a network: %v", err)
	}
}

// A node's network removed behind its back (`docker network prune` while no task
// uses it) is made again by the next start, which then succeeds.
func TestStartRemakesPrunedNetwork(t *testing.T) {
	e := newEngine(t, "prune")
	ctx := context.Background()
	n := testNetwork(t, e, testSubnet(3))
	if err := e.SetNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := testCLI.NetworkRemove(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	task := whoamiTask("t-pruned", 1)
	inst, err := e.Start(ctx, task)
	if err != nil {
		t.Fatalf("start after the network was pruned: %v", err)
	}
	if a, err := netip.ParseAddr(inst.Addr); err != nil || !n.Subnet.Contains(a) {
		t.Fatalf("task address %q is not of %v", inst.Addr, n.Subnet)
	}
	if err := e.Stop(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
}
