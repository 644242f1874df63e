package dispatcher

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// valueSnap adds stored values to the in-memory snapshot, as raftstore's has.
type valueSnap struct {
	Snapshot
	values map[string]string // kind/id@version -> value
}

func (s valueSnap) SecretValue(kind api.SecretKind, id string, version uint64) ([]byte, bool) {
	v, ok := s.values[fmt.Sprintf("%s/%s@%d", kind, id, version)]
	return []byte(v), ok
}

// A node is handed the values its live tasks name, at the versions they name,
// once each; a node with no task using a secret gets none, and an ended task's
// values are not handed out.
func TestAssignmentsSecretValues(t *testing.T) {
	st := newMemStore()
	for _, n := range []*api.Node{mkNode("1"), mkNode("2"), mkNode("3")} {
		st.putNode(n)
	}
	uses := func(v uint64, secrets ...string) func(*api.Service) {
		return func(s *api.Service) {
			for _, id := range secrets {
				s.Spec.Secrets = append(s.Spec.Secrets, api.SecretRef{Source: id, ID: id, Version: v, Target: id + "-" + fmt.Sprint(v)})
			}
			s.Spec.Configs = []api.SecretRef{{Source: "cfg", ID: "cfg", Version: 1, Target: "/cfg"}}
		}
	}
	web1, web2, plain := mkService("web", 2, uses(1, "db", "tls")), mkService("web", 2, uses(2, "db")), mkService("plain", 1)
	stopped := func(t *api.Task) { t.DesiredState = api.TaskShutdown }
	st.ApplyTaskOps(context.Background(), []api.TaskOp{
		{Kind: api.TaskOpCreate, Task: mkTask("a", web1, 1, "1", api.TaskRunning)},
		{Kind: api.TaskOpCreate, Task: mkTask("b", web2, 2, "1", api.TaskStarting)}, // same secret, newer version
		{Kind: api.TaskOpCreate, Task: mkTask("c", web1, 3, "1", api.TaskRunning)},  // asks for what a does
		{Kind: api.TaskOpCreate, Task: mkTask("d", web1, 1, "2", api.TaskFailed, stopped)},
		{Kind: api.TaskOpCreate, Task: mkTask("e", plain, 1, "3", api.TaskRunning)},
	})
	snap := valueSnap{st.Snapshot(), map[string]string{
		"secret/db@1": "pw1", "secret/db@2": "pw2", "secret/tls@1": "key", "config/cfg@1": "conf", "secret/other@1": "no",
	}}
	for _, tc := range []struct {
		node             string
		secrets, configs []api.SecretValue
	}{
		{"1", []api.SecretValue{{ID: "db", Version: 1, Data: []byte("pw1")}, {ID: "db", Version: 2, Data: []byte("pw2")}, {ID: "tls", Version: 1, Data: []byte("key")}},
			[]api.SecretValue{{ID: "cfg", Version: 1, Data: []byte("conf")}}},
		{"2", nil, nil}, // its only task ended
		{"3", nil, nil}, // runs nothing that uses one
	} {
		as, err := AssignmentsFor(snap, tc.node, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(as.Secrets, tc.secrets) || !reflect.DeepEqual(as.Configs, tc.configs) {
			t.Errorf("node %s: secrets %+v configs %+v, want %+v %+v", tc.node, as.Secrets, as.Configs, tc.secrets, tc.configs)
		}
	}
	if as, _ := AssignmentsFor(st.Snapshot(), "1", nil); as.Secrets != nil {
		t.Fatal("values from a snapshot that holds none")
	}
}
