package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/swarmlet/swarmlet/api"
)

func TestPendingKind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"no suitable node (3 nodes: 2 insufficient memory, 1 drained)", "insufficient memory"},
		{"no suitable node (1 node: 1 drained)", "drained"},
		{"no suitable node (no nodes in the cluster)", "no nodes in the cluster"},
		{"no suitable node (node abc is not in the cluster)", "node abc is not in the cluster"},
		{"no suitable node (2 nodes: 2 host port 80/tcp in use)", "host port 80/tcp in use"},
		{"no suitable node (3 nodes: 2 insufficient memory on n1, n2; 1 drained on n3)", "insufficient memory"},
		{"no suitable node (1 node: 1 max replicas per node 1 reached on n1)", "max replicas per node 1 reached"},
		{"no suitable node (9 nodes: 9 unmet constraint node.labels.zone==b on n1, n2, n3 and 6 more)", "unmet constraint node.labels.zone==b"},
		{"", "unknown"},
		{"waiting", "waiting"},
	} {
		if got := PendingKind(tc.in); got != tc.want {
			t.Errorf("PendingKind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// scrape serves m's handler once and parses the text format.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value finds the sample of name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestCollectAndHooks(t *testing.T) {
	tasks := []*api.Task{
		{ServiceName: "web", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskRunning}},
		{ServiceName: "web", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskRunning}},
		{ServiceName: "web", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}, PendingReason: "no suitable node (2 nodes: 2 insufficient memory)"},
		{ServiceName: "db", DesiredState: api.TaskShutdown, Status: api.TaskStatus{State: api.TaskFailed}},
	}
	m := New(Sources{
		Raft: func() map[string]string {
			return map[string]string{"state": "Leader", "term": "7", "last_log_index": "120", "commit_index": "119", "applied_index": "118", "num_peers": "2", "last_contact": "0"}
		},
		Tasks:    func() []*api.Task { return tasks },
		Sessions: func() int { return 3 },
		Members:  func() map[string]int { return map[string]int{"alive": 4, "dead": 1} },
	})
	m.Committed("task-ops", 3*time.Millisecond)
	m.Applied("task-ops", 50*time.Microsecond)
	m.LeaderChanged()
	m.Pass("scheduler", time.Millisecond, []api.TaskOp{{Kind: api.TaskOpAssign}, {Kind: api.TaskOpAssign}, {Kind: api.TaskOpPending}})
	m.Request("GET /v1/services/{name}", 200, 2*time.Millisecond)
	m.DNS("A", "answer")
	m.LBSynced(4*time.Millisecond, nil, map[string]int{"web": 2}, 3)
	var nilM *Metrics
	nilM.Pass("scheduler", time.Second, nil) // a part built without metrics records nothing

	fams := scrape(t, m)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"swarmlet_raft_state", map[string]string{"state": "leader"}, 1},
		{"swarmlet_raft_state", map[string]string{"state": "follower"}, 0},
		{"swarmlet_raft_term", nil, 7},
		{"swarmlet_raft_index", map[string]string{"kind": "applied"}, 118},
		{"swarmlet_raft_peers", nil, 2},
		{"swarmlet_raft_leader_changes_total", nil, 1},
		{"swarmlet_raft_commit_duration_seconds", map[string]string{"command": "task-ops"}, 1},
		{"swarmlet_raft_apply_duration_seconds", map[string]string{"command": "task-ops"}, 1},
		{"swarmlet_tasks", map[string]string{"service": "web", "state": "running", "desired": "running"}, 2},
		{"swarmlet_tasks", map[string]string{"service": "db", "state": "failed", "desired": "shutdown"}, 1},
		{"swarmlet_tasks_pending", map[string]string{"reason": "insufficient memory"}, 1},
		{"swarmlet_sessions", nil, 3},
		{"swarmlet_gossip_members", map[string]string{"state": "alive"}, 4},
		{"swarmlet_control_loop_passes_total", map[string]string{"loop": "scheduler"}, 1},
		{"swarmlet_control_loop_task_ops_total", map[string]string{"loop": "scheduler", "kind": "assign"}, 2},
		{"swarmlet_api_request_duration_seconds", map[string]string{"route": "GET /v1/services/{name}", "code": "200"}, 1},
		{"swarmlet_dns_queries_total", map[string]string{"qtype": "A"}, 1},
		{"swarmlet_dns_answers_total", map[string]string{"kind": "answer"}, 1},
		{"swarmlet_lb_backends", map[string]string{"service": "web"}, 2},
		{"swarmlet_lb_frontends", nil, 3},
		{"swarmlet_lb_sync_duration_seconds", nil, 1},
	} {
		if got, ok := value(fams, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// BenchmarkScrape measures one scrape with the state of a cluster of the given
// size (the collector reads every task).
func BenchmarkScrape(b *testing.B) {
	var tasks []*api.Task
	for i := range 600 {
		tasks = append(tasks, &api.Task{ServiceName: []string{"web", "api", "db", "cache", "worker", "batch"}[i%6],
			DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskState(i % 5)}})
	}
	m := New(Sources{Tasks: func() []*api.Task { return tasks }, Raft: func() map[string]string { return map[string]string{"state": "Leader"} }})
	for range 20 {
		m.Request("GET /v1/services/{name}", 200, time.Millisecond)
	}
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	}
}
