package docker

import (
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// A container the list still shows running after its die event is reported
// exited with the event's code; once the list catches up, it is forgotten.
func TestExitsAheadOfTheList(t *testing.T) {
	ev := func(action events.Action, id string, attrs map[string]string) events.Message {
		return events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: id, Attributes: attrs}}
	}
	var x exits
	x.heard(ev(events.ActionDie, "c1", map[string]string{"exitCode": "137"}))
	x.heard(ev(events.ActionDie, "c2", map[string]string{"exitCode": "0"}))
	x.heard(ev(events.ActionOOM, "c3", nil))
	x.heard(ev(events.ActionDie, "c3", map[string]string{"exitCode": "137"}))
	x.heard(ev(events.ActionDie, "c4", map[string]string{"exitCode": "1"}))
	x.heard(ev(events.ActionDestroy, "c4", nil))
	running := engine.Instance{TaskID: "t", State: api.TaskRunning, Health: api.HealthHealthy}
	for _, tc := range []struct {
		id    string
		state api.TaskState
		code  int
		err   string
	}{
		{"c1", api.TaskFailed, 137, "exit status 137"},
		{"c2", api.TaskComplete, 0, ""},
		{"c3", api.TaskFailed, 137, "out of memory (OOM killed)"},
		{"c4", api.TaskRunning, 0, ""}, // destroyed: nothing to say
		{"c5", api.TaskRunning, 0, ""}, // never died
	} {
		got, _ := x.exited(container.Summary{ID: tc.id}, running)
		if got.State != tc.state || got.ExitCode != tc.code || got.Err != tc.err {
			t.Errorf("%s: %+v, want %s code %d %q", tc.id, got, tc.state, tc.code, tc.err)
		}
		if got.State != api.TaskRunning && got.Health != "" {
			t.Errorf("%s: an exited container keeps health %q", tc.id, got.Health)
		}
	}
	x.forget(map[string]bool{"c1": true}) // the list still shows c1 running; the others caught up
	if _, ok := x.exited(container.Summary{ID: "c1"}, running); !ok {
		t.Fatal("c1 forgotten while the list still shows it running")
	}
	if _, ok := x.exited(container.Summary{ID: "c2"}, running); ok {
		t.Fatal("c2 remembered after the list caught up")
	}
}
