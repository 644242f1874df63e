package dispatcher

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/swarmlet/swarmlet/api"
	"pgregory.net/rapid"
)

func placementMap(ps []Placement) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		m[p.TaskID] = p.NodeID
	}
	return m
}

func perNode(ps []Placement) map[string]int {
	m := map[string]int{}
	for _, p := range ps {
		m[p.NodeID]++
	}
	return m
}

func newTasks(svc *api.Service, n int) []*api.Task {
	var ts []*api.Task
	for i := 1; i <= n; i++ {
		ts = append(ts, mkTask(fmt.Sprintf("%s-%d", svc.ID, i), svc, uint64(i), "", api.TaskNew))
	}
	return ts
}

func TestScheduleSpread(t *testing.T) {
	web := mkService("web", 6)
	db := mkService("db", 1)
	nodes := []*api.Node{mkNode("1"), mkNode("2"), mkNode("3")}

	t.Run("even", func(t *testing.T) {
		pending := newTasks(web, 6)
		ps, un := Schedule(nodes, pending, pending)
		if len(un) != 0 {
			t.Fatalf("unplaced: %v", un)
		}
		if got := perNode(ps); got["1"] != 2 || got["2"] != 2 || got["3"] != 2 {
			t.Errorf("per node = %v, want 2 each", got)
		}
	})
	t.Run("fewest of the service before fewest overall", func(t *testing.T) {
		// Node 1 is busy with db tasks, node 2 already runs a web task: the next web
		// task goes to node 3 (no web, no tasks), then node 1 (no web) before node 2.
		existing := []*api.Task{
			mkTask("d1", db, 1, "1", api.TaskRunning), mkTask("d2", db, 2, "1", api.TaskRunning),
			mkTask("w0", web, 9, "2", api.TaskRunning),
		}
		pending := newTasks(web, 2)
		ps, _ := Schedule(nodes, append(existing, pending...), pending)
		if got := placementMap(ps); got["web-1"] != "3" || got["web-2"] != "1" {
			t.Errorf("placements = %v, want web-1->3 web-2->1", got)
		}
	})
	t.Run("terminal and stopping tasks do not count for spread", func(t *testing.T) {
		existing := []*api.Task{
			mkTask("w1", web, 1, "1", api.TaskFailed),
			mkTask("w2", web, 2, "1", api.TaskRunning, func(t *api.Task) { t.DesiredState = api.TaskShutdown }),
			mkTask("w3", web, 3, "2", api.TaskRunning),
			mkTask("w4", web, 4, "3", api.TaskRunning),
		}
		pending := newTasks(web, 1)
		ps, _ := Schedule(nodes, append(existing, pending...), pending)
		if got := placementMap(ps); got["web-1"] != "1" {
			t.Errorf("placements = %v, want web-1->1", got)
		}
	})
	t.Run("deterministic whatever the input order", func(t *testing.T) {
		pending := append(newTasks(web, 7), newTasks(db, 4)...)
		want, _ := Schedule(nodes, pending, pending)
		for i := range 20 {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			shuffled := slices.Clone(pending)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			ns := slices.Clone(nodes)
			r.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
			got, _ := Schedule(ns, shuffled, shuffled)
			if !slices.Equal(got, want) {
				t.Fatalf("order %d: %v, want %v", i, got, want)
			}
		}
	})
}

func TestScheduleFilters(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name     string
		nodes    []*api.Node
		svc      func(*api.Service)
		existing func(svc *api.Service) []*api.Task
		n        int
		want     map[string]int // tasks per node
		reason   string         // of the unplaced tasks
	}{
		{name: "down, drained and paused take nothing new",
			nodes: []*api.Node{mkNode("1", down), mkNode("2", drained), mkNode("3", paused), mkNode("4")},
			n:     2, want: map[string]int{"4": 2}},
		{name: "reasons aggregate, most common first",
			nodes:  []*api.Node{mkNode("1", down), mkNode("2", drained), mkNode("3", paused), mkNode("4", drained)},
			n:      1,
			reason: "no suitable node (4 nodes: 2 drained on host-2, host-4; 1 down on host-1; 1 paused on host-3)"},
		{name: "no nodes", n: 1, reason: "no suitable node (no nodes in the cluster)"},
		{name: "label constraint",
			nodes: []*api.Node{mkNode("1", label("zone", "a")), mkNode("2", label("zone", "b")), mkNode("3")},
			svc:   func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone==a"} },
			n:     2, want: map[string]int{"1": 2}},
		{name: "!= holds where the label is missing",
			nodes: []*api.Node{mkNode("1", label("zone", "a")), mkNode("2", label("zone", "b")), mkNode("3")},
			svc:   func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone!=a"} },
			n:     2, want: map[string]int{"2": 1, "3": 1}},
		{name: "fixed keys",
			nodes: []*api.Node{mkNode("1"), mkNode("2", func(n *api.Node) { n.Role = api.RoleManager }), mkNode("3", func(n *api.Node) { n.Role = api.RoleManager })},
			svc: func(s *api.Service) {
				s.Spec.Constraints = []string{"node.role==manager", "node.hostname!=host-3", "node.engine==process", "node.addr==10.0.0.2", "node.id==2"}
			},
			n: 1, want: map[string]int{"2": 1}},
		{name: "unmet constraint explained",
			nodes:  []*api.Node{mkNode("1"), mkNode("2", drained)},
			svc:    func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.gpu==yes"} },
			n:      1,
			reason: "no suitable node (2 nodes: 1 drained on host-2; 1 unmet constraint node.labels.gpu==yes on host-1)"},
		{name: "memory fills up as tasks are placed",
			nodes:  []*api.Node{mkNode("1", capacity(0, 2*gib)), mkNode("2", capacity(0, 1*gib)), mkNode("3", drained)},
			svc:    func(s *api.Service) { s.Spec.Reservations.MemoryBytes = gib },
			n:      4,
			want:   map[string]int{"1": 2, "2": 1},
			reason: "no suitable node (3 nodes: 2 insufficient memory on host-1, host-2; 1 drained on host-3)"},
		{name: "existing non-terminal tasks reserve, terminal ones do not",
			nodes: []*api.Node{mkNode("1", capacity(4e9, 0)), mkNode("2", capacity(4e9, 0))},
			svc:   func(s *api.Service) { s.Spec.Reservations.NanoCPUs = 2e9 },
			existing: func(svc *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("a", svc, 10, "1", api.TaskRunning),
					mkTask("b", svc, 11, "1", api.TaskRunning, func(t *api.Task) { t.DesiredState = api.TaskShutdown }),
					mkTask("c", svc, 12, "2", api.TaskFailed),
					mkTask("d", svc, 13, "2", api.TaskComplete),
				}
			},
			n: 3, want: map[string]int{"2": 2},
			reason: "no suitable node (2 nodes: 2 insufficient CPU on host-1, host-2)"},
		{name: "zero capacity means unknown, so unlimited",
			nodes: []*api.Node{mkNode("1")},
			svc:   func(s *api.Service) { s.Spec.Reservations = api.Resources{NanoCPUs: 64e9, MemoryBytes: 1 << 40} },
			n:     3, want: map[string]int{"1": 3}},
		{name: "host-mode published ports conflict on a node",
			nodes: []*api.Node{mkNode("1"), mkNode("2")},
			svc: func(s *api.Service) {
				s.Spec.Ports = []api.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: api.PublishHost}}
			},
			n: 3, want: map[string]int{"1": 1, "2": 1},
			reason: "no suitable node (2 nodes: 2 host port 8080/tcp in use on host-1, host-2)"},
		{name: "ingress and dynamic host ports never conflict",
			nodes: []*api.Node{mkNode("1")},
			svc: func(s *api.Service) {
				s.Spec.Ports = []api.PortConfig{
					{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: api.PublishIngress},
					{Protocol: "tcp", TargetPort: 81, PublishMode: api.PublishHost}}
			},
			n: 3, want: map[string]int{"1": 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := mkService("s", uint64(tc.n))
			if tc.svc != nil {
				tc.svc(svc)
			}
			pending := newTasks(svc, tc.n)
			all := slices.Clone(pending)
			if tc.existing != nil {
				all = append(all, tc.existing(svc)...)
			}
			ps, un := Schedule(tc.nodes, all, pending)
			if got := perNode(ps); len(got) != len(tc.want) || !mapsEqual(got, tc.want) {
				t.Errorf("per node = %v, want %v", got, tc.want)
			}
			if len(ps)+len(un) != tc.n {
				t.Errorf("%d placed + %d unplaced != %d", len(ps), len(un), tc.n)
			}
			for _, u := range un {
				if u.Reason != tc.reason {
					t.Errorf("reason %q, want %q", u.Reason, tc.reason)
				}
			}
			if tc.reason != "" && len(un) == 0 {
				t.Errorf("all placed, want some unplaced with %q", tc.reason)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func TestScheduleGlobalPinned(t *testing.T) {
	svc := mkService("g", 0, global)
	nodes := []*api.Node{mkNode("1"), mkNode("2", paused), mkNode("3")}
	pending := []*api.Task{
		mkTask("g1", svc, 0, "1", api.TaskNew),
		mkTask("g2", svc, 0, "2", api.TaskNew),
		mkTask("g9", svc, 0, "9", api.TaskNew),
	}
	ps, un := Schedule(nodes, pending, pending)
	if !slices.Equal(ps, []Placement{{"g1", "1"}}) {
		t.Errorf("placements = %v", ps)
	}
	want := []Unplaced{
		{"g2", "no suitable node (1 node: 1 paused on host-2)"},
		{"g9", "no suitable node (node 9 is not in the cluster)"},
	}
	if !slices.Equal(un, want) {
		t.Errorf("unplaced = %v, want %v", un, want)
	}
}

// The linear scan used for small groups and the heap used for big ones must choose
// alike, reasons included.
func TestSchedulePickersAgree(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var nodes []*api.Node
		for i := range rapid.IntRange(0, 8).Draw(rt, "nodes") {
			nodes = append(nodes, mkNode(fmt.Sprint(i), randomNodeState(rt, "n"),
				capacity(rapid.Int64Range(0, 4).Draw(rt, "cpu")*1e9, rapid.Int64Range(0, 4).Draw(rt, "mem")<<30)))
		}
		var all, pending []*api.Task
		for s := range rapid.IntRange(1, 3).Draw(rt, "services") {
			svc := mkService(fmt.Sprintf("s%d", s), 0, func(svc *api.Service) {
				svc.Spec.Reservations = api.Resources{NanoCPUs: rapid.Int64Range(0, 2).Draw(rt, "rcpu") * 1e9, MemoryBytes: rapid.Int64Range(0, 2).Draw(rt, "rmem") << 30}
				if rapid.Bool().Draw(rt, "port") {
					svc.Spec.Ports = []api.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 80, PublishMode: api.PublishHost}}
				}
				svc.Spec.MaxReplicasPerNode = rapid.Uint64Range(0, 3).Draw(rt, "max-per-node")
			})
			for i := range rapid.IntRange(0, 10).Draw(rt, "tasks") {
				tk := mkTask(fmt.Sprintf("%s-%d", svc.ID, i), svc, uint64(i+1), "", api.TaskNew)
				if len(nodes) > 0 && rapid.Bool().Draw(rt, "placed") {
					tk.NodeID = nodes[rapid.IntRange(0, len(nodes)-1).Draw(rt, "on")].ID
					tk.Status.State = api.TaskRunning
				} else {
					pending = append(pending, tk)
				}
				all = append(all, tk)
			}
		}
		defer func(old int) { linearMax = old }(linearMax)
		linearMax = 0
		hp, hu := Schedule(nodes, all, pending)
		linearMax = 1 << 30
		lp, lu := Schedule(nodes, all, pending)
		if !slices.Equal(hp, lp) || !slices.Equal(hu, lu) {
			rt.Fatalf("heap: %v %v\nlinear: %v %v", hp, hu, lp, lu)
		}
	})
}
