package dispatcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// benchCluster builds nodes in three zones (one in ten drained) with 8 CPUs and
// 16 GiB each, and services whose tasks reserve a little; every fourth service is
// constrained to a zone.
func benchCluster(nNodes, nServices, replicas int) (nodes []*api.Node, services []*api.Service, pending []*api.Task) {
	zones := []string{"a", "b", "c"}
	for i := range nNodes {
		opts := []func(*api.Node){label("zone", zones[i%3]), capacity(8e9, 16<<30)}
		if i%10 == 9 {
			opts = append(opts, drained)
		}
		nodes = append(nodes, mkNode(fmt.Sprintf("node%04d", i), opts...))
	}
	for s := range nServices {
		svc := mkService(fmt.Sprintf("svc%04d", s), uint64(replicas), func(svc *api.Service) {
			svc.Spec.Reservations = api.Resources{NanoCPUs: 1e8, MemoryBytes: 128 << 20}
			if s%4 == 0 {
				svc.Spec.Constraints = []string{"node.labels.zone==" + zones[s%3]}
			}
		})
		services = append(services, svc)
		for r := 1; r <= replicas; r++ {
			pending = append(pending, mkTask(fmt.Sprintf("%s-%d", svc.ID, r), svc, uint64(r), "", api.TaskNew))
		}
	}
	return nodes, services, pending
}

func benchSchedule(b *testing.B, nNodes, nServices, replicas int) {
	nodes, _, pending := benchCluster(nNodes, nServices, replicas)
	b.ReportAllocs()
	b.ResetTimer()
	placed := 0
	for b.Loop() {
		ps, _ := Schedule(nodes, pending, pending)
		placed += len(ps)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/sec")
}

// 10k tasks of 100 services (100 replicas each) on 1k nodes.
func BenchmarkSchedule10kTasks1kNodes(b *testing.B) { benchSchedule(b, 1000, 100, 100) }

// The worst case for per-group work: every task its own service.
func BenchmarkSchedule10kServices1kNodes(b *testing.B) { benchSchedule(b, 1000, 10000, 1) }

// 10k tasks of 10 services spread over the zones, then over racks within each
// (Swarm's nested placement preferences), on 1k nodes.
func BenchmarkScheduleSpread10kTasks1kNodes(b *testing.B) {
	nodes, _, pending := benchCluster(1000, 10, 1000)
	for i, n := range nodes {
		n.Labels["rack"] = fmt.Sprint(i % 17)
	}
	for _, t := range pending {
		t.Spec.Constraints = nil
		t.Spec.PlacementPrefs = []api.PlacementPref{{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	placed := 0
	for b.Loop() {
		ps, _ := Schedule(nodes, pending, pending)
		placed += len(ps)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/sec")
}

// Steady state: a thousand running replicas with full history, nothing to do. This
// is what the orchestrator pays on every store change.
func BenchmarkReconcileSteady1kReplicas(b *testing.B) {
	svc := mkService("web", 1000)
	nodes := []*api.Node{mkNode("1"), mkNode("2"), mkNode("3")}
	var tasks []*api.Task
	for slot := uint64(1); slot <= 1000; slot++ {
		tasks = append(tasks, mkTask(fmt.Sprintf("t%d", slot), svc, slot, nodes[slot%3].ID, api.TaskRunning, createdAt(time.Hour)))
		for h := range HistoryPerSlot {
			tasks = append(tasks, mkTask(fmt.Sprintf("t%d-%d", slot, h), svc, slot, nodes[slot%3].ID, api.TaskFailed, stopping, createdAt(time.Duration(h)*time.Minute)))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if p := Reconcile(svc, nodes, tasks, t0, ids("n")); len(p.Ops) != 0 {
			b.Fatalf("steady state wrote %d ops", len(p.Ops))
		}
	}
}

// Creation: a new service of a thousand replicas.
func BenchmarkReconcileCreate1kReplicas(b *testing.B) {
	svc := mkService("web", 1000)
	nodes := []*api.Node{mkNode("1")}
	b.ReportAllocs()
	for b.Loop() {
		Reconcile(svc, nodes, nil, t0, ids("n"))
	}
}
