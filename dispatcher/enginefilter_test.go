package dispatcher

import (
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func engine(name string) func(*api.Node) { return func(n *api.Node) { n.Engine = name } }

func withMount(s *api.Service) {
	s.Spec.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/t"}}
}

// A task whose spec the process engine cannot honour goes to a docker node;
// with none, it stays pending and the reason names the gap.
func TestScheduleEngineGaps(t *testing.T) {
	mounted := mkService("m", 2, withMount, func(s *api.Service) { s.Spec.Container = &api.ContainerOptions{CapAdd: []string{"CAP_KILL"}} })
	plain := mkService("p", 2, func(s *api.Service) { s.Spec.Container = &api.ContainerOptions{Workdir: "/w", PidsLimit: 9} })
	for _, tc := range []struct {
		name     string
		svc      *api.Service
		nodes    []*api.Node
		onNodes  map[string]int
		reasonIn string
	}{
		{"gaps go to docker", mounted, []*api.Node{mkNode("1"), mkNode("2", engine("docker"))}, map[string]int{"2": 2}, ""},
		{"honoured options go anywhere", plain, []*api.Node{mkNode("1"), mkNode("2", engine("docker"))}, map[string]int{"1": 1, "2": 1}, ""},
		{"only process nodes", mounted, []*api.Node{mkNode("1"), mkNode("2"), mkNode("3", drained, engine("docker"))}, map[string]int{},
			"no suitable node (3 nodes: 2 engine process cannot honour --mount, --cap-add on host-1, host-2; 1 drained on host-3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pending := newTasks(tc.svc, 2)
			ps, un := Schedule(tc.nodes, pending, pending)
			got := perNode(ps)
			for n, want := range tc.onNodes {
				if got[n] != want {
					t.Errorf("per node %v, want %v", got, tc.onNodes)
				}
			}
			if tc.reasonIn == "" && len(un) != 0 || tc.reasonIn != "" && (len(un) != 2 || !strings.Contains(un[0].Reason, tc.reasonIn)) {
				t.Errorf("unplaced %+v, want reason %q", un, tc.reasonIn)
			}
		})
	}
	// Two services with the same constraints but different gaps do not share
	// the static filters' verdict.
	pm, pp := newTasks(mounted, 1), newTasks(plain, 1)
	nodes := []*api.Node{mkNode("1")}
	ps, un := Schedule(nodes, append(pp, pm...), append(pp, pm...))
	if len(ps) != 1 || ps[0].TaskID != pp[0].ID || len(un) != 1 || un[0].TaskID != pm[0].ID {
		t.Errorf("placed %+v unplaced %+v", ps, un)
	}
}

// A global service leaves out the nodes whose engine cannot run it, as it
// leaves out those its constraints exclude.
func TestReconcileGlobalEngineGaps(t *testing.T) {
	svc := mkService("g", 0, global, withMount)
	nodes := []*api.Node{mkNode("1"), mkNode("2", engine("docker"))}
	p := Reconcile(svc, nodes, nil, t0, ids("n"))
	checkOps(t, p.Ops, "create n1 slot=0 node=2")
}

func TestEngineRefusal(t *testing.T) {
	spec := func(cons ...string) *api.ServiceSpec {
		s := mkService("m", 1, withMount).Spec
		s.Constraints = cons
		return &s
	}
	process, docker := mkNode("1"), mkNode("2", engine("docker"), label("disk", "ssd"))
	for _, tc := range []struct {
		name   string
		spec   *api.ServiceSpec
		nodes  []*api.Node
		errHas string
	}{
		{"a docker node may run it", spec(), []*api.Node{process, docker}, ""},
		{"only process nodes", spec(), []*api.Node{process, mkNode("3")}, "engine process cannot honour --mount, and every node this service may run on runs it (host-1, host-3)"},
		{"constraints keep it on process nodes", spec("node.labels.disk!=ssd"), []*api.Node{process, docker}, "(host-1)"},
		{"no node fits the constraints: it waits", spec("node.labels.zone==x"), []*api.Node{process, docker}, ""},
		{"no nodes yet", spec(), nil, ""},
		{"nothing the process engine cannot do", &mkService("p", 1).Spec, []*api.Node{process}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := EngineRefusal(tc.spec, tc.nodes)
			if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Fatalf("EngineRefusal = %v, want %q", err, tc.errHas)
			}
		})
	}
}
