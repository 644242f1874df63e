package dispatcher

import (
	"context"
	"reflect"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// authSnap adds stored registry credentials to the in-memory snapshot, as
// raftstore's snapshot has them.
type authSnap struct {
	Snapshot
	auths map[string]string
}

func (s authSnap) RegistryAuth(id string) string { return s.auths[id] }

const (
	idA = "sha256:aaaa000000000000000000000000000000000000000000000000000000000000"
	idB = "sha256:bbbb000000000000000000000000000000000000000000000000000000000000"
)

// A node is told the credentials of the services it runs live tasks of, and no
// other; and, for a pinned image its tasks still need, the ready nodes whose live
// tasks hold it.
func TestAssignmentsImageInfo(t *testing.T) {
	st := newMemStore()
	for _, n := range []*api.Node{mkNode("1"), mkNode("2"), mkNode("3"), mkNode("4", down)} {
		st.putNode(n)
	}
	pin := func(id string) func(*api.Service) { return func(s *api.Service) { s.Spec.ImageID = id } }
	web, db, old := mkService("web", 3, pin(idA)), mkService("db", 1, pin(idB)), mkService("old", 1)
	holds := func(id string) func(*api.Task) { return func(t *api.Task) { t.Status.ImageID = id } }
	stopped := func(t *api.Task) { t.DesiredState = api.TaskShutdown }
	st.ApplyTaskOps(context.Background(), []api.TaskOp{
		{Kind: api.TaskOpCreate, Task: mkTask("w1", web, 1, "1", api.TaskPreparing)},           // node 1 needs A
		{Kind: api.TaskOpCreate, Task: mkTask("w2", web, 2, "2", api.TaskRunning, holds(idA))}, // node 2 holds A
		{Kind: api.TaskOpCreate, Task: mkTask("w3", web, 3, "3", api.TaskStarting, holds(idA))},
		{Kind: api.TaskOpCreate, Task: mkTask("w4", web, 4, "4", api.TaskRunning, holds(idA))},         // down node: no source
		{Kind: api.TaskOpCreate, Task: mkTask("d1", db, 1, "2", api.TaskRunning, holds(idB))},          // node 1 needs no B
		{Kind: api.TaskOpCreate, Task: mkTask("o1", old, 1, "1", api.TaskFailed, stopped)},             // ended: no credentials
		{Kind: api.TaskOpCreate, Task: mkTask("w0", web, 5, "3", api.TaskFailed, holds(idA), stopped)}, // ended: not a source
	})
	snap := authSnap{st.Snapshot(), map[string]string{"web": "cred-web", "db": "cred-db", "old": "cred-old"}}
	for _, tc := range []struct {
		node    string
		auth    map[string]string
		sources map[string][]string
	}{
		{"1", map[string]string{"web": "cred-web"}, map[string][]string{idA: {"2", "3"}}},
		{"2", map[string]string{"web": "cred-web", "db": "cred-db"}, nil}, // holds what it runs
		{"3", map[string]string{"web": "cred-web"}, nil},
	} {
		as, err := AssignmentsFor(snap, tc.node, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(as.RegistryAuth, tc.auth) {
			t.Errorf("node %s credentials %v, want %v", tc.node, as.RegistryAuth, tc.auth)
		}
		if !reflect.DeepEqual(as.ImageSources, tc.sources) {
			t.Errorf("node %s image sources %v, want %v", tc.node, as.ImageSources, tc.sources)
		}
	}
	// A snapshot that knows no credentials hands out none.
	if as, _ := AssignmentsFor(st.Snapshot(), "1", nil); as.RegistryAuth != nil {
		t.Fatalf("credentials from a plain snapshot: %v", as.RegistryAuth)
	}
}
