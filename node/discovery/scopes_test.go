package discovery

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func TestStackScopes(t *testing.T) {
	task := func(id, stack, addr string, st api.TaskState) *api.Task {
		tk := &api.Task{ID: id, Status: api.TaskStatus{State: st, Addr: addr}}
		if stack != "" {
			tk.Spec.Labels = map[string]string{api.LabelStackNamespace: stack}
		}
		return tk
	}
	as := api.Assignments{
		Node:  &api.Node{ID: "n1", Addr: "192.0.2.1"},
		Nodes: []api.Node{{ID: "n1", Addr: "192.0.2.1"}, {ID: "n2", Addr: "192.0.2.2"}},
		Tasks: []*api.Task{
			task("web", "shop", "10.188.1.2", api.TaskRunning),
			task("starting", "shop", "10.188.1.3", api.TaskStarting), // may query before it is healthy
			task("blog", "blog", "10.188.1.4", api.TaskRunning),
			task("plain", "", "10.188.1.5", api.TaskRunning),     // no stack: no scope
			task("proc", "shop", "192.0.2.1", api.TaskRunning),   // the node's address is everyone's
			task("done", "shop", "10.188.1.6", api.TaskComplete), // its address may be reused
			task("x1", "shop", "10.188.1.7", api.TaskRunning),    // two stacks claim one address
			task("x2", "blog", "10.188.1.7", api.TaskRunning),
			task("noaddr", "shop", "", api.TaskAssigned),
		},
	}
	want := map[netip.Addr]string{
		netip.MustParseAddr("10.188.1.2"): "shop_",
		netip.MustParseAddr("10.188.1.3"): "shop_",
		netip.MustParseAddr("10.188.1.4"): "blog_",
	}
	if got := stackScopes(as); !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if got := DNSTable(as).Scopes; !reflect.DeepEqual(got, want) {
		t.Fatalf("the DNS table's scopes: %v", got)
	}
	if got := stackScopes(sampleAssignments()); got != nil {
		t.Fatalf("no stack tasks, scopes %v", got)
	}
}
