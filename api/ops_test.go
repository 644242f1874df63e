package api

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestApplyTaskOp(t *testing.T) {
	at := time.Unix(100, 0).UTC()
	newTask := func(state TaskState, node string) *Task {
		return &Task{ID: "t1", NodeID: node, DesiredState: TaskRunning, Status: TaskStatus{State: state}, Spec: ServiceSpec{Env: []string{"A=1"}}}
	}
	running := TaskStatus{State: TaskRunning, Message: "started", Timestamp: at}
	for _, tc := range []struct {
		name    string
		cur     *Task
		op      TaskOp
		want    OpResult
		check   func(*Task) bool
		wantErr bool
	}{
		{"create", nil, TaskOp{Kind: TaskOpCreate, Task: newTask(TaskNew, "")}, OpChanged, func(t *Task) bool { return t.CreateIndex == 7 && t.ModifyIndex == 7 }, false},
		{"create existing", newTask(TaskNew, ""), TaskOp{Kind: TaskOpCreate, Task: newTask(TaskNew, "")}, OpSkipped, nil, false},
		{"create without task", nil, TaskOp{Kind: TaskOpCreate}, OpSkipped, nil, true},
		{"unknown task", nil, TaskOp{Kind: TaskOpStatus, TaskID: "t1", Status: running}, OpSkipped, nil, false},
		{"assign pending", newTask(TaskPending, ""), TaskOp{Kind: TaskOpAssign, TaskID: "t1", NodeID: "n1", At: at}, OpChanged,
			func(t *Task) bool { return t.NodeID == "n1" && t.Status.State == TaskAssigned && t.ModifyIndex == 7 }, false},
		{"assign placed", newTask(TaskAssigned, "n1"), TaskOp{Kind: TaskOpAssign, TaskID: "t1", NodeID: "n2"}, OpSkipped, nil, false},
		{"pending new", newTask(TaskNew, ""), TaskOp{Kind: TaskOpPending, TaskID: "t1", Reason: "no node"}, OpChanged,
			func(t *Task) bool { return t.PendingReason == "no node" && t.Status.State == TaskPending }, false},
		{"pending assigned", newTask(TaskAssigned, "n1"), TaskOp{Kind: TaskOpPending, TaskID: "t1", Reason: "x"}, OpSkipped, nil, false},
		{"desired raise", newTask(TaskRunning, "n1"), TaskOp{Kind: TaskOpDesired, TaskID: "t1", Desired: TaskShutdown}, OpChanged,
			func(t *Task) bool { return t.DesiredState == TaskShutdown }, false},
		{"desired lower", &Task{ID: "t1", DesiredState: TaskShutdown}, TaskOp{Kind: TaskOpDesired, TaskID: "t1", Desired: TaskRunning}, OpSkipped, nil, false},
		{"status forward", newTask(TaskAssigned, "n1"), TaskOp{Kind: TaskOpStatus, TaskID: "t1", Status: running}, OpChanged,
			func(t *Task) bool { return reflect.DeepEqual(t.Status, running) }, false},
		{"status backward", newTask(TaskRunning, "n1"), TaskOp{Kind: TaskOpStatus, TaskID: "t1", Status: TaskStatus{State: TaskStarting}}, OpSkipped, nil, false},
		{"status identical", &Task{ID: "t1", NodeID: "n1", Status: running}, TaskOp{Kind: TaskOpStatus, TaskID: "t1", Status: running}, OpSkipped, nil, false},
		{"status same state new message", &Task{ID: "t1", NodeID: "n1", Status: running}, TaskOp{Kind: TaskOpStatus, TaskID: "t1", Status: TaskStatus{State: TaskRunning, Message: "healthy"}}, OpChanged, nil, false},
		{"status from other node", newTask(TaskAssigned, "n1"), TaskOp{Kind: TaskOpStatus, TaskID: "t1", NodeID: "n2", Status: running}, OpSkipped, nil, false},
		{"status from own node", newTask(TaskAssigned, "n1"), TaskOp{Kind: TaskOpStatus, TaskID: "t1", NodeID: "n1", Status: running}, OpChanged, nil, false},
		{"delete terminal", newTask(TaskFailed, "n1"), TaskOp{Kind: TaskOpDelete, TaskID: "t1"}, OpDeleted, nil, false},
		{"delete unplaced", newTask(TaskPending, ""), TaskOp{Kind: TaskOpDelete, TaskID: "t1"}, OpDeleted, nil, false},
		{"delete live", newTask(TaskRunning, "n1"), TaskOp{Kind: TaskOpDelete, TaskID: "t1"}, OpSkipped, nil, true},
		{"unknown kind", newTask(TaskRunning, "n1"), TaskOp{Kind: "explode", TaskID: "t1"}, OpSkipped, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before Task
			if tc.cur != nil {
				before = *tc.cur.Clone()
			}
			got, res, err := ApplyTaskOp(tc.cur, tc.op, 7)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if res != tc.want {
				t.Fatalf("result %v, want %v", res, tc.want)
			}
			if tc.check != nil && !tc.check(got) {
				t.Fatalf("unexpected task %+v", got)
			}
			if tc.cur != nil && !reflect.DeepEqual(*tc.cur, before) {
				t.Fatal("the current task was modified in place")
			}
			// Ops change state, never the spec: the new version shares it with the
			// old (neither is changed in place), so status reports copy no spec.
			if got != nil && tc.cur != nil && len(got.Spec.Env) > 0 && &got.Spec.Env[0] != &tc.cur.Spec.Env[0] {
				t.Fatal("the changed task copied its spec")
			}
		})
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		err    error
		kind   string
		status int
	}{
		{ErrInvalid, ErrKindInvalid, 400},
		{ErrForbidden, ErrKindForbidden, 403},
		{ErrNotFound, ErrKindNotFound, 404},
		{ErrConflict, ErrKindConflict, 409},
		{ErrNotLeader, ErrKindRefused, 503},
		{ErrNoQuorum, ErrKindNoQuorum, 503},
		{ErrOutcomeUnknown, ErrKindUnknown, 504},
		{errors.New("boom"), ErrKindInternal, 500},
		// An unknown outcome wins over a refusal it met on the way.
		{errors.Join(ErrNotLeader, ErrOutcomeUnknown), ErrKindUnknown, 504},
	} {
		k := KindOf(tc.err)
		if k != tc.kind || HTTPStatus(k) != tc.status {
			t.Errorf("%v: kind %s status %d, want %s %d", tc.err, k, HTTPStatus(k), tc.kind, tc.status)
		}
		if s := SentinelOf(k); k != ErrKindInternal && !errors.Is(tc.err, s) {
			t.Errorf("%v: SentinelOf(%s) = %v, not wrapped by the error", tc.err, k, s)
		}
	}
	if b := ErrorBodyOf(errors.Join(errors.New("timeout"), ErrOutcomeUnknown)); b.Kind != ErrKindUnknown {
		t.Fatalf("body %+v", b)
	}
	if b := ErrorBodyOf(errors.Join(errors.New("x"), ErrNotFound)); b.Kind != ErrKindNotFound || b.Error == "" {
		t.Fatalf("body %+v", b)
	}
}
