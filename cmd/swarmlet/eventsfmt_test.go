package main

import (
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func sampleEvents() []api.Event {
	return []api.Event{
		{ID: 1, Index: 3, Time: t0, Type: api.EventLeader, Action: "elected", ObjectID: "n1aaaaaaaaaa", Name: "node1", Attributes: map[string]string{"term": "2"}},
		{ID: 2, Index: 9, Time: t0, Type: api.EventService, Action: "create", ObjectID: "s1web0000000", Name: "web", Attributes: map[string]string{"replicas": "2", "mode": "replicated", "image": "nginx"}},
		{ID: 3, Index: 10, Time: t0, Type: api.EventTask, Action: "running", ObjectID: "t1", Name: "web.1", Attributes: map[string]string{"service": "web", "service_id": "s1web0000000", "node": "n1aaaaaaaaaa", "state": "running", "desired": "running"}},
		{ID: 4, Index: 11, Type: api.EventNode, Action: "availability", ObjectID: "n2bbbbbbbbbb", Name: "node2", Attributes: map[string]string{"availability": "drain"}},
		{ID: 5, Index: 12, Time: t0, Type: api.EventService, Action: "create", ObjectID: "s2webapi0000", Name: "webapi"},
	}
}

func TestGoldenEvents(t *testing.T) {
	var b strings.Builder
	for _, e := range sampleEvents() {
		b.WriteString(eventLine(e) + "\n")
	}
	golden(t, "events", b.String())
}

func TestEventFilters(t *testing.T) {
	for _, tc := range []struct {
		filters []string
		want    string // IDs that pass
	}{
		{nil, "12345"},
		{[]string{"type=service,name=web"}, "2"},
		{[]string{"type=service", "name=web"}, "2"},
		{[]string{"name=web"}, "23"},
		{[]string{"service=web"}, "23"},
		{[]string{"service=s1web"}, "23"},
		{[]string{"node=node2"}, "4"},
		{[]string{"node=n1aaaaaaaaaa"}, "3"},
		{[]string{"type=leader", "type=node"}, "14"},
		{[]string{"action=create"}, "25"},
		{[]string{"id=t1"}, "3"},
	} {
		f, err := eventFilters(tc.filters)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, e := range sampleEvents() {
			if eventMatch(f, e) {
				got += string(rune('0' + e.ID))
			}
		}
		if got != tc.want {
			t.Errorf("%v passes %q, want %q", tc.filters, got, tc.want)
		}
	}
	for _, bad := range []string{"colour=red", "type=volume", "type"} {
		if _, err := eventFilters([]string{bad}); err == nil {
			t.Errorf("--filter %s accepted", bad)
		}
	}
}
