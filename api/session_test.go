package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func ep(svc, id, node string) Endpoint {
	return Endpoint{Service: svc, TaskID: id, NodeID: node, NodeIP: "10.0.0." + node, Addr: "10.1.0." + id}
}

func TestSessionViewApply(t *testing.T) {
	t1, t2, t3 := &Task{ID: "t1"}, &Task{ID: "t2"}, &Task{ID: "t3"}
	whole := Assignments{Index: 10, Node: &Node{ID: "n1"}, Tasks: []*Task{t1, t2}, CA: "ca", GossipKeys: [][]byte{{1}},
		Endpoints: []ServiceEndpoints{
			{Service: "db", Tasks: []Endpoint{ep("db", "d1", "2")}},
			{Service: "web", VIP: "10.43.0.1", Tasks: []Endpoint{ep("web", "w1", "1"), ep("web", "w2", "2")}},
		},
		Nodes: []Node{{ID: "n1"}, {ID: "n2"}}}
	cases := []struct {
		name  string
		delta Assignments
		want  Assignments
		err   error
	}{
		{
			name: "endpoints added, changed and gone; a task added; a node added, one gone",
			delta: Assignments{Index: 12, Since: 10, Delta: true, Node: &Node{ID: "n1"}, Tasks: []*Task{t3}, TaskIDs: []string{"t1", "t3"},
				Endpoints: []ServiceEndpoints{{Service: "web", VIP: "10.43.0.9", Tasks: []Endpoint{ep("web", "w3", "3"), ep("web", "w1", "3")}, Gone: []string{"w2"}}},
				Nodes:     []Node{{ID: "n3"}}, NodesGone: []string{"n2"}},
			want: Assignments{Index: 12, Node: &Node{ID: "n1"}, Tasks: []*Task{t1, t3}, CA: "ca", GossipKeys: [][]byte{{1}},
				Endpoints: []ServiceEndpoints{
					{Service: "db", Tasks: []Endpoint{ep("db", "d1", "2")}},
					{Service: "web", VIP: "10.43.0.9", Tasks: []Endpoint{ep("web", "w1", "3"), ep("web", "w3", "3")}},
				},
				Nodes: []Node{{ID: "n1"}, {ID: "n3"}}},
		},
		{
			name:  "a service gone, new trust",
			delta: Assignments{Index: 11, Since: 10, Delta: true, TaskIDs: []string{"t1", "t2"}, EndpointsGone: []string{"db"}, CA: "ca2"},
			want: Assignments{Index: 11, Node: &Node{ID: "n1"}, Tasks: []*Task{t1, t2}, CA: "ca2", GossipKeys: [][]byte{{1}},
				Endpoints: []ServiceEndpoints{{Service: "web", VIP: "10.43.0.1", Tasks: []Endpoint{ep("web", "w1", "1"), ep("web", "w2", "2")}}},
				Nodes:     []Node{{ID: "n1"}, {ID: "n2"}}},
		},
		{name: "delta from another index", delta: Assignments{Index: 13, Since: 11, Delta: true}, err: ErrSessionGap},
		{name: "a task named without its record", delta: Assignments{Index: 13, Since: 10, Delta: true, TaskIDs: []string{"t9"}}, err: ErrSessionGap},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v SessionView
			got, err := v.Apply(whole)
			if err != nil || !reflect.DeepEqual(got, whole) {
				t.Fatalf("whole answer: %+v, %v", got, err)
			}
			got, err = v.Apply(tc.delta)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || v.Index() != 0 {
					t.Fatalf("err %v (view at %d), want %v and a view reset", err, v.Index(), tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v (%v)\nwant %+v", got, err, tc.want)
			}
			if v.Index() != tc.want.Index {
				t.Fatalf("view at %d, want %d", v.Index(), tc.want.Index)
			}
		})
	}
}

// A whole assignments value handed out is never changed by later answers.
func TestSessionViewKeepsHandedOutValues(t *testing.T) {
	var v SessionView
	first, _ := v.Apply(Assignments{Index: 1, Endpoints: []ServiceEndpoints{{Service: "web", Tasks: []Endpoint{ep("web", "w1", "1")}}}})
	if _, err := v.Apply(Assignments{Index: 2, Since: 1, Delta: true, Endpoints: []ServiceEndpoints{{Service: "web", Gone: []string{"w1"}}}}); err != nil {
		t.Fatal(err)
	}
	if len(first.Endpoints) != 1 || len(first.Endpoints[0].Tasks) != 1 {
		t.Fatalf("the first answer changed: %+v", first.Endpoints)
	}
}

func TestRowRoundTrip(t *testing.T) {
	for _, e := range []Endpoint{
		{Service: "web", TaskID: "t1", Slot: 3, NodeID: "n1", NodeIP: "10.0.0.1", Addr: "10.0.0.1", Ports: []PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: 30001}}},
		{Service: "web", TaskID: "t2", Slot: 0, NodeID: "n1", NodeIP: "10.0.0.1", Addr: "10.42.1.7",
			Ports: []PortBinding{{Protocol: "udp", TargetPort: 53, HostPort: 30053}, {Protocol: "", TargetPort: 9, HostPort: 9}}},
		{Service: "odd", TaskID: `t"3\`, NodeID: "n<2>", NodeIP: "10.0.0.2", Addr: "10.0.0.2"},
	} {
		b, err := json.Marshal(RowOf(e))
		if err != nil {
			t.Fatal(err)
		}
		var r Row
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got := r.Endpoint(e.Service, e.NodeIP); !reflect.DeepEqual(got, e) {
			t.Fatalf("%s:\n got %+v\nwant %+v", b, got, e)
		}
	}
}
