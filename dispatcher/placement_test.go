package dispatcher

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func spread(keys ...string) func(*api.Service) {
	return func(s *api.Service) {
		for _, k := range keys {
			s.Spec.PlacementPrefs = append(s.Spec.PlacementPrefs, api.PlacementPref{Spread: k})
		}
	}
}

func maxPerNode(n uint64) func(*api.Service) {
	return func(s *api.Service) { s.Spec.MaxReplicasPerNode = n }
}

func platform(os, arch string) func(*api.Node) {
	return func(n *api.Node) { n.Platform = api.Platform{OS: os, Arch: arch} }
}

func engineLabel(k, v string) func(*api.Node) {
	return func(n *api.Node) {
		if n.EngineLabels == nil {
			n.EngineLabels = map[string]string{}
		}
		n.EngineLabels[k] = v
	}
}

// perLabel sums placements per value of a node label ("-" for nodes without it).
func perLabel(nodes []*api.Node, ps []Placement, key string) map[string]int {
	byID := map[string]*api.Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	out := map[string]int{}
	for _, p := range ps {
		v, ok := byID[p.NodeID].Labels[key]
		if !ok {
			v = "-"
		}
		out[v]++
	}
	return out
}

func TestSchedulePlacement(t *testing.T) {
	zone := func(v string) func(*api.Node) { return label("zone", v) }
	tests := []struct {
		name     string
		nodes    []*api.Node
		svc      []func(*api.Service)
		existing func(svc *api.Service) []*api.Task
		n        int
		want     map[string]int // tasks per node
		reason   string         // of the unplaced tasks
	}{
		{name: "spread shares tasks per label value, not per node",
			nodes: []*api.Node{mkNode("1", zone("a")), mkNode("2", zone("a")), mkNode("3", zone("a")), mkNode("4", zone("b"))},
			svc:   []func(*api.Service){spread("node.labels.zone")},
			n:     6, want: map[string]int{"1": 1, "2": 1, "3": 1, "4": 3}},
		{name: "nodes without the label are a group of their own",
			nodes: []*api.Node{mkNode("1", zone("a")), mkNode("2", zone("b")), mkNode("3"), mkNode("4")},
			svc:   []func(*api.Service){spread("node.labels.zone")},
			n:     6, want: map[string]int{"1": 2, "2": 2, "3": 1, "4": 1}},
		{name: "nested: over data centres, then racks within each",
			nodes: []*api.Node{
				mkNode("1", label("dc", "east"), label("rack", "r1")), mkNode("2", label("dc", "east"), label("rack", "r1")),
				mkNode("3", label("dc", "east"), label("rack", "r2")),
				mkNode("4", label("dc", "west"), label("rack", "r3")), mkNode("5", label("dc", "west"), label("rack", "r3")),
			},
			svc: []func(*api.Service){spread("node.labels.dc", "node.labels.rack")},
			// east gets 4 (r1: 2 over its two nodes, r2: 2 on its one); west gets 4.
			n: 8, want: map[string]int{"1": 1, "2": 1, "3": 2, "4": 2, "5": 2}},
		{name: "the service's tasks already placed count",
			nodes: []*api.Node{mkNode("1", zone("a")), mkNode("2", zone("b"))},
			svc:   []func(*api.Service){spread("node.labels.zone")},
			existing: func(svc *api.Service) []*api.Task {
				return []*api.Task{mkTask("x", svc, 10, "1", api.TaskRunning), mkTask("y", svc, 11, "1", api.TaskRunning)}
			},
			n: 2, want: map[string]int{"2": 2}},
		{name: "a zone with no eligible node takes nothing",
			nodes: []*api.Node{mkNode("1", zone("a")), mkNode("2", zone("b"), drained), mkNode("3", zone("c"))},
			svc:   []func(*api.Service){spread("node.labels.zone")},
			n:     4, want: map[string]int{"1": 2, "3": 2}},
		{name: "a full zone drops out and the others take the rest",
			nodes: []*api.Node{mkNode("1", zone("a"), capacity(0, 1<<30)), mkNode("2", zone("b")), mkNode("3", zone("c"))},
			svc:   []func(*api.Service){spread("node.labels.zone"), func(s *api.Service) { s.Spec.Reservations.MemoryBytes = 1 << 30 }},
			n:     5, want: map[string]int{"1": 1, "2": 2, "3": 2}},
		{name: "spread over engine labels and platforms",
			nodes: []*api.Node{mkNode("1", platform("linux", "x86_64")), mkNode("2", platform("linux", "x86_64")), mkNode("3", platform("linux", "aarch64"))},
			svc:   []func(*api.Service){spread("node.platform.arch")},
			n:     4, want: map[string]int{"1": 1, "2": 1, "3": 2}},
		{name: "max replicas per node",
			nodes: []*api.Node{mkNode("1"), mkNode("2"), mkNode("3", drained)},
			svc:   []func(*api.Service){maxPerNode(2)},
			n:     5, want: map[string]int{"1": 2, "2": 2},
			reason: "no suitable node (3 nodes: 2 max replicas per node 2 reached on host-1, host-2; 1 drained on host-3)"},
		{name: "max replicas per node counts what already runs",
			nodes: []*api.Node{mkNode("1"), mkNode("2")},
			svc:   []func(*api.Service){maxPerNode(1)},
			existing: func(svc *api.Service) []*api.Task {
				return []*api.Task{mkTask("x", svc, 10, "1", api.TaskRunning), mkTask("y", svc, 11, "2", api.TaskFailed)}
			},
			n: 2, want: map[string]int{"2": 1},
			reason: "no suitable node (2 nodes: 2 max replicas per node 1 reached on host-1, host-2)"},
		{name: "max replicas per node with spread",
			nodes: []*api.Node{mkNode("1", zone("a")), mkNode("2", zone("b")), mkNode("3", zone("b"))},
			svc:   []func(*api.Service){spread("node.labels.zone"), maxPerNode(1)},
			n:     4, want: map[string]int{"1": 1, "2": 1, "3": 1},
			reason: "no suitable node (3 nodes: 3 max replicas per node 1 reached on host-1, host-2, host-3)"},
		{name: "platform constraints match Swarm's spellings",
			nodes: []*api.Node{mkNode("1", platform("linux", "amd64")), mkNode("2", platform("linux", "arm64")), mkNode("3")},
			svc: []func(*api.Service){func(s *api.Service) {
				s.Spec.Constraints = []string{"node.platform.os==Linux", "node.platform.arch==x86_64"}
			}},
			n: 2, want: map[string]int{"1": 2}},
		{name: "engine label constraints",
			nodes: []*api.Node{mkNode("1", engineLabel("disk", "ssd")), mkNode("2", engineLabel("disk", "hdd")), mkNode("3", label("disk", "ssd"))},
			svc:   []func(*api.Service){func(s *api.Service) { s.Spec.Constraints = []string{"engine.labels.disk==ssd"} }},
			n:     2, want: map[string]int{"1": 2}},
		{name: "refusals name the nodes, a few per reason",
			nodes:  []*api.Node{mkNode("1", drained), mkNode("2", drained), mkNode("3", drained), mkNode("4", drained), mkNode("5", drained), mkNode("6", zone("b"))},
			svc:    []func(*api.Service){func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone==a"} }},
			n:      1,
			reason: "no suitable node (6 nodes: 5 drained on host-1, host-2, host-3 and 2 more; 1 unmet constraint node.labels.zone==a on host-6)"},
		{name: "nodes sharing a host name are named by ID",
			nodes: []*api.Node{
				mkNode("1", label("zone", "b"), func(n *api.Node) { n.Hostname = "box" }),
				mkNode("2", label("zone", "b"), func(n *api.Node) { n.Hostname = "box" }),
				mkNode("3", label("zone", "b"), func(n *api.Node) { n.Hostname = "other" }),
			},
			svc:    []func(*api.Service){func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone==a"} }},
			n:      1,
			reason: "no suitable node (3 nodes: 3 unmet constraint node.labels.zone==a on 1, 2, other)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := mkService("s", uint64(tc.n), tc.svc...)
			pending := newTasks(svc, tc.n)
			all := slices.Clone(pending)
			if tc.existing != nil {
				all = append(all, tc.existing(svc)...)
			}
			for _, lm := range []int{0, 1 << 30} { // the heap and the scan alike
				defer func(old int) { linearMax = old }(linearMax)
				linearMax = lm
				ps, un := Schedule(tc.nodes, all, pending)
				if got := perNode(ps); !mapsEqual(got, tc.want) {
					t.Errorf("per node = %v, want %v", got, tc.want)
				}
				if len(ps)+len(un) != tc.n {
					t.Errorf("%d placed + %d unplaced != %d", len(ps), len(un), tc.n)
				}
				for _, u := range un {
					if u.Reason != tc.reason {
						t.Errorf("reason %q,\n        want %q", u.Reason, tc.reason)
					}
				}
				if tc.reason != "" && len(un) == 0 {
					t.Errorf("all placed, want some unplaced with %q", tc.reason)
				}
			}
		})
	}
}

// A thousand tasks over three zones of unequal size end up a third in each,
// whatever order the nodes and tasks come in.
func TestScheduleSpreadBig(t *testing.T) {
	var nodes []*api.Node
	for i := range 30 {
		z := "a"
		switch {
		case i >= 25:
			z = "c"
		case i >= 5:
			z = "b"
		}
		nodes = append(nodes, mkNode(fmt.Sprintf("%02d", i), label("zone", z)))
	}
	svc := mkService("s", 999, spread("node.labels.zone"))
	pending := newTasks(svc, 999)
	want, un := Schedule(nodes, pending, pending)
	if len(un) != 0 {
		t.Fatalf("unplaced: %v", un[0])
	}
	if got := perLabel(nodes, want, "zone"); got["a"] != 333 || got["b"] != 333 || got["c"] != 333 {
		t.Errorf("per zone = %v, want 333 each", got)
	}
	if got := perNode(want); got["00"] != 67 || got["05"] != 17 {
		t.Errorf("zone a's nodes got %d, zone b's %d; want 333/5 and 333/20 rounded up", got["00"], got["05"])
	}
	for i := range 5 {
		r := rand.New(rand.NewPCG(uint64(i), 2))
		ns, ps := slices.Clone(nodes), slices.Clone(pending)
		r.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		if got, _ := Schedule(ns, ps, ps); !slices.Equal(got, want) {
			t.Fatalf("order %d: placements differ", i)
		}
	}
}
