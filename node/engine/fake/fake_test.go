package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

func TestStartStopList(t *testing.T) {
	cases := []struct {
		name  string
		opt   Options
		image string
		want  api.TaskState // after Start (0: Start fails)
		rej   bool
	}{
		{name: "runs at once", image: "app", want: api.TaskRunning},
		{name: "rejected", opt: Options{RejectPrefix: "bad/"}, image: "bad/app", rej: true},
		{name: "start fails", opt: Options{FailPrefix: "fail/"}, image: "fail/app"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := New(engine.Config{NodeID: "n1", NodeAddr: "127.0.0.1"}, tc.opt)
			task := &api.Task{ID: "t1", ServiceName: "web", Spec: api.ServiceSpec{Image: tc.image, Ports: []api.PortConfig{{TargetPort: 80}}}}
			in, err := e.Start(context.Background(), task)
			if tc.want == 0 {
				if err == nil || errors.Is(err, engine.ErrRejected) != tc.rej {
					t.Fatalf("Start: err %v, want a failure (rejected %v)", err, tc.rej)
				}
				if n := e.Running(); n != 0 {
					t.Fatalf("running %d after a failed start", n)
				}
				return
			}
			if err != nil || in.State != tc.want || in.Addr != "127.0.0.1" || len(in.Ports) != 1 || in.Ports[0].HostPort == 0 {
				t.Fatalf("Start: %+v, %v", in, err)
			}
			if l, _ := e.List(context.Background()); len(l) != 1 || l[0].TaskID != "t1" {
				t.Fatalf("List: %+v", l)
			}
			if err := e.Stop(context.Background(), "t1"); err != nil {
				t.Fatal(err)
			}
			if l, _ := e.List(context.Background()); len(l) != 0 {
				t.Fatalf("List after Stop: %+v", l)
			}
		})
	}
}

func TestRunForExits(t *testing.T) {
	e := New(engine.Config{NodeID: "n1", NodeAddr: "127.0.0.1"}, Options{RunFor: 10 * time.Millisecond, ExitCode: 3})
	ctx, cancel := context.WithCancel(context.Background())
	ch := e.Changes(ctx)
	if _, err := e.Start(ctx, &api.Task{ID: "t1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ch:
		if id != "t1" {
			t.Fatalf("change for %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change heard for the exit")
	}
	l, _ := e.List(ctx)
	if len(l) != 1 || l[0].State != api.TaskFailed || l[0].ExitCode != 3 {
		t.Fatalf("after the exit: %+v", l)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a change after the subscription ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Changes not closed when its context ended")
	}
}
