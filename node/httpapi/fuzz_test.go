package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/raftstore"
)

// FuzzBodies feeds arbitrary JSON to each request body the API decodes, and runs
// what decodes through the checks and the state change the handler would make, on
// an in-memory state: nothing may panic (a panic in Apply would crash every manager
// in turn), and whatever is refused changes nothing.
func FuzzBodies(f *testing.F) {
	seeds := map[byte][]any{
		'c': {api.ServiceSpec{Name: "web", Image: "/bin/sleep", Command: []string{"100"}, Replicas: 3, Ports: []api.PortConfig{{TargetPort: 80}}},
			api.ServiceSpec{Name: "g", Image: "x", Mode: api.ModeGlobal, Env: []string{"A=b"}}},
		'u': {api.ServiceUpdateRequest{Version: 1, Spec: api.ServiceSpec{Name: "web", Image: "y", Replicas: 1}}},
		's': {api.ScaleRequest{Replicas: 5}, api.ScaleRequest{Replicas: 1 << 60}},
		'n': {api.NodeUpdateRequest{Availability: api.AvailabilityDrain, LabelAdd: map[string]string{"k": "v"}}, api.NodeUpdateRequest{Role: "boss"}},
		'j': {api.JoinRequest{Token: "SWLT-1-x-y", Node: api.Node{Addr: "127.66.0.9", APIPort: 1, RaftPort: 2, GossipPort: 3}, CSR: []byte{0x30, 0x01}}},
		'r': {api.CertificateRequest{CSR: []byte("garbage"), Name: "alice"}},
		't': {api.StatusReport{Ops: []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "t1", Status: api.TaskStatus{State: api.TaskRunning}}}},
			api.StatusReport{Ops: []api.TaskOp{{Kind: api.TaskOpDelete, TaskID: "t1"}}}},
		'g': {api.RegisterRequest{Node: api.Node{ID: "n2", Addr: "::1", APIPort: 65536}}},
	}
	for kind, vs := range seeds {
		for _, v := range vs {
			b, _ := json.Marshal(v)
			f.Add(kind, b)
		}
	}
	f.Add(byte('c'), []byte(`{"name":"a","image":"b","replicas":1e30}`))
	f.Add(byte('c'), []byte(`{"name":"a","image":"b","unknown":1}`))
	ca, err := pki.NewCA("fuzz", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		st := baseState(t)
		before := st.Snapshot().Digest()
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		var changed bool
		apply := func(c raftstore.Command) {
			if _, err := st.Apply(st.Snapshot().Index()+1, c); err == nil {
				changed = true
			}
		}
		switch kind {
		case 'c':
			var spec api.ServiceSpec
			if decodeBody(req, &spec) != nil {
				break
			}
			spec.Normalize()
			if spec.Validate() == nil {
				apply(&raftstore.ServiceCreate{ID: "s9", Spec: spec, At: time.Now()})
				// The orchestrator must cope with whatever was accepted.
				reconcileAll(st.Snapshot())
			}
		case 'u':
			var u api.ServiceUpdateRequest
			if decodeBody(req, &u) != nil {
				break
			}
			u.Spec.Normalize()
			if u.Spec.Validate() == nil {
				apply(&raftstore.ServiceUpdate{Name: "web", ExpectedVersion: u.Version, Spec: u.Spec, At: time.Now()})
				reconcileAll(st.Snapshot())
			}
		case 's':
			var s api.ScaleRequest
			if decodeBody(req, &s) == nil && s.Replicas <= api.MaxReplicas {
				apply(&raftstore.ServiceScale{Name: "web", Replicas: s.Replicas, At: time.Now()})
				reconcileAll(st.Snapshot())
			}
		case 'n':
			var n api.NodeUpdateRequest
			if decodeBody(req, &n) == nil {
				apply(&raftstore.NodeUpdate{NodeID: "n1", Availability: n.Availability, Role: n.Role, LabelAdd: n.LabelAdd, LabelRm: n.LabelRm})
			}
		case 'j':
			var j api.JoinRequest
			if decodeBody(req, &j) == nil {
				if tok, err := pki.ParseToken(j.Token); err == nil {
					_ = tok.MatchesHash(pki.HashSecret(tok.Secret))
				}
				if checkSelf(j.Node) == nil {
					_, _ = ca.IssueNode(j.CSR, pki.NodeRequest{NodeID: "n9", Role: api.RoleWorker, Addrs: []string{j.Node.Addr}})
				}
			}
		case 'r':
			var r api.CertificateRequest
			if decodeBody(req, &r) == nil {
				_, _ = ca.IssueClient(r.CSR, r.Name, 0, time.Time{})
			}
		case 't':
			var rep api.StatusReport
			if decodeBody(req, &rep) == nil {
				if ops, err := dispatcher.CheckStatusReport(st.Snapshot(), "n2", rep.Ops); err == nil {
					apply(&raftstore.TaskOps{Ops: ops})
				}
			}
		case 'g':
			var rr api.RegisterRequest
			if decodeBody(req, &rr) == nil && checkSelf(rr.Node) == nil {
				apply(&raftstore.NodeUpsert{Node: rr.Node, Refresh: true})
			}
		default:
			return
		}
		if !changed && st.Snapshot().Digest() != before {
			t.Fatalf("a refused %q body changed the state: %q", kind, body)
		}
	})
}

// baseState is a small cluster: two nodes, a service with a task on n1.
func baseState(t *testing.T) *raftstore.State {
	st := raftstore.NewState()
	now := time.Unix(1700000000, 0).UTC()
	task := &api.Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, DesiredState: api.TaskRunning,
		Status: api.TaskStatus{State: api.TaskNew, Timestamp: now}}
	for i, c := range []raftstore.Command{
		&raftstore.ClusterInit{ClusterID: "c", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30100}, At: now},
		&raftstore.NodeUpsert{Node: api.Node{ID: "n1", Addr: "127.66.0.1", Role: api.RoleManager}},
		&raftstore.NodeUpsert{Node: api.Node{ID: "n2", Addr: "127.66.0.2", Role: api.RoleWorker}},
		&raftstore.ServiceCreate{ID: "s1", Spec: api.ServiceSpec{Name: "web", Image: "/bin/sleep", Replicas: 1}, At: now},
		&raftstore.TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpCreate, Task: task}, {Kind: api.TaskOpAssign, TaskID: "t1", NodeID: "n1", At: now}}},
	} {
		if _, err := st.Apply(uint64(i+1), c); err != nil {
			t.Fatalf("base state: %v", err)
		}
	}
	return st
}

// reconcileAll runs the orchestrator's pure function over every service, as the
// leader does after each change.
func reconcileAll(snap *raftstore.Snapshot) {
	n := 0
	for _, svc := range snap.Services() {
		dispatcher.Reconcile(svc, snap.Nodes(), snap.TasksByService(svc.ID), time.Now(), func() string { n++; return "x" + string(rune('a'+n%26)) })
	}
}
