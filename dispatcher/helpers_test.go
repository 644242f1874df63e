package dispatcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func mkNode(id string, opts ...func(*api.Node)) *api.Node {
	n := &api.Node{ID: id, Hostname: "host-" + id, Addr: "10.0.0." + id, Role: api.RoleWorker,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Engine: "process"}
	for _, o := range opts {
		o(n)
	}
	return n
}

func down(n *api.Node)    { n.Status = api.NodeDown }
func drained(n *api.Node) { n.Availability = api.AvailabilityDrain }
func paused(n *api.Node)  { n.Availability = api.AvailabilityPause }
func label(k, v string) func(*api.Node) {
	return func(n *api.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}
func capacity(cpu, mem int64) func(*api.Node) {
	return func(n *api.Node) { n.Resources = api.Resources{NanoCPUs: cpu, MemoryBytes: mem} }
}

func mkService(id string, replicas uint64, opts ...func(*api.Service)) *api.Service {
	s := &api.Service{ID: id, SpecVersion: 1, Spec: api.ServiceSpec{Name: id, Image: "img", Mode: api.ModeReplicated,
		Replicas: replicas, EndpointMode: api.EndpointVIP, RestartPolicy: api.RestartPolicy{Condition: api.RestartAny}}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func global(s *api.Service) { s.Spec.Mode = api.ModeGlobal; s.Spec.Replicas = 0 }

// mkTask is a task of svc in slot on node, in state st.
func mkTask(id string, svc *api.Service, slot uint64, node string, st api.TaskState, opts ...func(*api.Task)) *api.Task {
	t := &api.Task{ID: id, ServiceID: svc.ID, ServiceName: svc.Spec.Name, Slot: slot, NodeID: node, Spec: svc.Spec,
		SpecVersion: svc.SpecVersion, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: st, Timestamp: t0}, CreatedAt: t0}
	for _, o := range opts {
		o(t)
	}
	return t
}

func ids(prefix string) func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("%s%d", prefix, n) }
}

// opString renders an op compactly for table tests.
func opString(op api.TaskOp) string {
	switch op.Kind {
	case api.TaskOpCreate:
		t := op.Task
		s := fmt.Sprintf("create %s slot=%d", t.ID, t.Slot)
		if pin := pinnedNode(t); pin != "" {
			s += " node=" + pin
		}
		if t.Attempt != 0 {
			s += fmt.Sprintf(" attempt=%d", t.Attempt)
		}
		if t.DesiredState == api.TaskReady {
			s += " held"
		}
		return s
	case api.TaskOpAssign:
		return "assign " + op.TaskID + " " + op.NodeID
	case api.TaskOpPending:
		return "pending " + op.TaskID + " " + op.Reason
	case api.TaskOpDesired:
		return "desired " + op.TaskID + " " + op.Desired.String()
	case api.TaskOpStatus:
		return "status " + op.TaskID + " " + op.Status.State.String()
	case api.TaskOpDelete:
		return "delete " + op.TaskID
	}
	return string(op.Kind)
}

func opStrings(ops []api.TaskOp) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = opString(op)
	}
	return out
}

func checkOps(t *testing.T, got []api.TaskOp, want ...string) {
	t.Helper()
	if g := opStrings(got); !slices.Equal(g, want) {
		t.Errorf("ops:\n got: %s\nwant: %s", strings.Join(g, "; "), strings.Join(want, "; "))
	}
}

// applyToList applies ops to a task list as the FSM would and returns the new list.
func applyToList(tasks []*api.Task, ops []api.TaskOp) []*api.Task {
	m := map[string]*api.Task{}
	for _, t := range tasks {
		m[t.ID] = t
	}
	applyOps(m, ops, 100)
	return sortedTasks(m)
}

func dur(d time.Duration) *time.Duration { return &d }
