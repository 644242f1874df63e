package scenarios

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// h builds hand-made histories: times are in milliseconds for readability.
type h []Op

func (x h) w(client int, f, key string, value int, o Outcome, inv, comp int64) h {
	op := Op{Index: len(x), Client: client, Node: "n1", F: f, Key: key, Value: value, Outcome: o,
		Invoke: inv * 1e6, Complete: comp * 1e6}
	if o == Info {
		op.Err = "outcome unknown"
	}
	return append(x, op)
}

func (x h) read(client int, key string, exists bool, replicas int, inv, comp int64) h {
	return append(x, Op{Index: len(x), Client: client, Node: "n1", F: FInspect, Key: key, Exists: exists,
		Replicas: replicas, Outcome: OK, Invoke: inv * 1e6, Complete: comp * 1e6})
}

func (x h) ls(client int, listing map[string]int, inv, comp int64) h {
	return append(x, Op{Index: len(x), Client: client, Node: "n1", F: FList, Listing: listing,
		Outcome: OK, Invoke: inv * 1e6, Complete: comp * 1e6})
}

func (x h) failWith(kind string) h {
	x[len(x)-1].ErrKind = kind
	return x
}

func TestLinearizable(t *testing.T) {
	cases := []struct {
		name string
		ops  h
		want Status
	}{
		{"sequential", h{}.
			w(0, FCreate, "a", 2, OK, 0, 10).
			read(1, "a", true, 2, 11, 12).
			w(0, FScale, "a", 5, OK, 20, 30).
			ls(1, map[string]int{"a": 5}, 31, 32).
			w(1, FRm, "a", 0, OK, 40, 50).
			read(0, "a", false, 0, 51, 52), Pass},
		{"concurrent read sees either value", h{}.
			w(0, FCreate, "a", 2, OK, 0, 10).
			w(0, FScale, "a", 5, OK, 20, 30).
			read(1, "a", true, 2, 21, 29).
			read(2, "a", true, 5, 22, 28), Pass},
		{"reads disagree on order", h{}.
			w(0, FCreate, "a", 2, OK, 0, 10).
			w(0, FScale, "a", 5, OK, 20, 30).
			read(1, "a", true, 5, 21, 23).
			read(2, "a", true, 2, 24, 28), Failed},
		{"stale read after acknowledged scale", h{}.
			w(0, FCreate, "a", 3, OK, 0, 10).
			w(0, FScale, "a", 5, OK, 20, 30).
			read(1, "a", true, 3, 40, 50), Failed},
		{"unknown create shows up much later", h{}.
			w(0, FCreate, "a", 3, Info, 0, 10).
			read(1, "a", false, 0, 20, 21).
			read(1, "a", true, 3, 500, 501), Pass},
		{"unknown create never shows up", h{}.
			w(0, FCreate, "a", 3, Info, 0, 10).
			read(1, "a", false, 0, 500, 501), Pass},
		{"refused scale shows up", h{}.
			w(0, FCreate, "a", 3, OK, 0, 10).
			w(0, FScale, "a", 7, Fail, 20, 30).
			read(1, "a", true, 7, 40, 50), Failed},
		{"refused create then read absent", h{}.
			w(0, FCreate, "a", 3, Fail, 0, 10).
			read(1, "a", false, 0, 20, 30), Pass},
		{"acknowledged create lost", h{}.
			w(0, FCreate, "a", 3, OK, 0, 10).
			ls(1, map[string]int{}, 20, 30), Failed},
		{"not-found refusal while it exists", h{}.
			w(0, FCreate, "a", 3, OK, 0, 10).
			w(1, FScale, "a", 4, Fail, 20, 30).failWith(ErrKindNotFound), Failed},
		{"not-found refusal concurrent with create", h{}.
			w(0, FCreate, "a", 3, OK, 0, 10).
			w(1, FScale, "a", 4, Fail, 5, 30).failWith(ErrKindNotFound), Pass},
		{"services are independent", h{}.
			w(0, FCreate, "a", 1, OK, 0, 10).
			w(1, FCreate, "b", 2, OK, 0, 10).
			ls(2, map[string]int{"a": 1, "b": 2}, 11, 12).
			w(0, FRm, "a", 0, OK, 20, 30).
			ls(2, map[string]int{"b": 2}, 31, 32), Pass},
		{"phantom service in a listing", h{}.
			w(0, FCreate, "a", 1, OK, 0, 10).
			ls(2, map[string]int{"a": 1, "zzz": 2}, 11, 12), Failed},
		{"double rm acknowledged", h{}.
			w(0, FCreate, "a", 1, OK, 0, 10).
			w(0, FRm, "a", 0, OK, 20, 30).
			w(1, FRm, "a", 0, OK, 40, 50), Failed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			viz := filepath.Join(t.TempDir(), "lin.html")
			v := CheckLinearizable(tc.ops, 10*time.Second, viz)
			if v.Status != tc.want {
				t.Fatalf("got %v, want %s", v, tc.want)
			}
		})
	}
}

func TestLostWrites(t *testing.T) {
	base := h{}.
		w(0, FCreate, "a", 2, OK, 0, 10).
		w(0, FScale, "a", 5, OK, 20, 30)
	cases := []struct {
		name  string
		ops   h
		final map[string]int
		want  Status
	}{
		{"last write kept", base, map[string]int{"a": 5}, Pass},
		{"last write lost", base, map[string]int{"a": 2}, Failed},
		{"service lost", base, map[string]int{}, Failed},
		{"concurrent writes either wins", base.w(1, FScale, "a", 6, OK, 25, 35), map[string]int{"a": 5}, Pass},
		{"unknown rm may have applied", base.w(1, FRm, "a", 0, Info, 40, 50), map[string]int{}, Pass},
		{"unknown rm may not have applied", base.w(1, FRm, "a", 0, Info, 40, 50), map[string]int{"a": 5}, Pass},
		{"refused scale is not a candidate", base.w(1, FScale, "a", 9, Fail, 40, 50), map[string]int{"a": 9}, Failed},
		{"only unknown create", h{}.w(0, FCreate, "b", 1, Info, 0, 10), map[string]int{}, Pass},
		{"phantom replicas", base, map[string]int{"a": 4}, Failed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if v := CheckLostWrites(tc.ops, tc.final); v.Status != tc.want {
				t.Fatalf("got %v, want %s", v, tc.want)
			}
		})
	}
}

func TestFailedNotApplied(t *testing.T) {
	base := h{}.w(0, FCreate, "a", 2, OK, 0, 10)
	cases := []struct {
		name string
		ops  h
		want Status
	}{
		{"refused scale never seen", base.w(1, FScale, "a", 7, Fail, 20, 30).read(2, "a", true, 2, 40, 41), Pass},
		{"refused scale seen", base.w(1, FScale, "a", 7, Fail, 20, 30).read(2, "a", true, 7, 40, 41), Failed},
		{"refused scale seen in a listing", base.w(1, FScale, "a", 7, Fail, 20, 30).ls(2, map[string]int{"a": 7}, 40, 41), Failed},
		{"unknown scale seen", base.w(1, FScale, "a", 7, Info, 20, 30).read(2, "a", true, 7, 40, 41), Pass},
		{"refused rm but gone", base.read(2, "a", true, 2, 11, 12).w(1, FRm, "a", 0, Fail, 20, 30).read(2, "a", false, 0, 40, 41), Failed},
		{"refused create but exists", h{}.w(0, FCreate, "c", 2, Fail, 0, 10).read(2, "c", true, 2, 40, 41), Failed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if v := CheckFailedNotApplied(tc.ops); v.Status != tc.want {
				t.Fatalf("got %v, want %s", v, tc.want)
			}
		})
	}
}

func TestLeaders(t *testing.T) {
	ok := []StateSample{
		{Node: "n1", Term: 2, Leader: "id1"},
		{Node: "n2", Term: 2, Leader: "127.0.0.11:4241"},
		{Node: "n3", Term: 3, Leader: ""},
		{Node: "n3", Term: 4, Leader: "id2"},
	}
	resolve := func(s string) string {
		if s == "127.0.0.11:4241" {
			return "id1"
		}
		return s
	}
	if v := CheckLeaders(ok, []LeaderClaim{{Node: "id2", Term: 4, Source: "log of n2"}}, resolve); v.Status != Pass {
		t.Fatalf("got %v", v)
	}
	// Samples alone never fail the check (term and leader are not read atomically
	// in raft), but their disagreement is noted.
	bad := append(ok, StateSample{Node: "n3", Term: 2, Leader: "id3"})
	v := CheckLeaders(bad, []LeaderClaim{{Node: "id1", Term: 2, Source: "log of n1"}}, resolve)
	if v.Status != Pass || !strings.Contains(strings.Join(v.Details, "\n"), "term 2 has 2 leaders") {
		t.Fatalf("got %v", v)
	}
	v = CheckLeaders(nil, []LeaderClaim{{Node: "id1", Term: 2, Source: "log of n1"}, {Node: "id3", Term: 2, Source: "log of n3"}}, resolve)
	if v.Status != Failed || !strings.Contains(v.Details[0], "term 2 has 2 leaders") {
		t.Fatalf("got %v", v)
	}
	v = CheckLeaders(ok, []LeaderClaim{{Node: "id3", Term: 4, Source: "log of n3"}}, resolve)
	if v.Status != Pass || !strings.Contains(strings.Join(v.Details, "\n"), "term 4 has 2 leaders") {
		t.Fatalf("a log claim disagreeing with samples should be noted: %v", v)
	}
	if v := CheckLeaders(ok, nil, nil); v.Status != Skipped {
		t.Fatalf("got %v", v)
	}
}

func TestDigests(t *testing.T) {
	s := []StateSample{
		{Node: "n1", Index: 10, Digest: "aa"},
		{Node: "n2", Index: 10, Digest: "aa"},
		{Node: "n2", Index: 11, Digest: "bb"},
	}
	if v := CheckDigests(s); v.Status != Pass {
		t.Fatalf("got %v", v)
	}
	s = append(s, StateSample{Node: "n3", Index: 11, Digest: "cc"}, StateSample{Node: "n1", Index: 11, Digest: "dd"})
	v := CheckDigests(s)
	if v.Status != Failed || len(v.Details) != 1 {
		t.Fatalf("want one violation at index 11, got %v", v)
	}
}

func TestConvergence(t *testing.T) {
	svcs := []ServiceRow{{Name: "a", Running: 2, Desired: 2}, {Name: "b", Running: 0, Desired: 0}}
	tasks := map[string][]TaskRow{"a": {
		{ID: "t1", Service: "a", Slot: 1, Current: "running"},
		{ID: "t2", Service: "a", Slot: 2, Current: "running"},
		{ID: "t0", Service: "a", Slot: 1, Current: "shutdown"},
	}}
	procs := []TaskProc{{PID: 1, Service: "a", Slot: "1"}, {PID: 2, Service: "a", Slot: "2"}}
	if p := ConvergenceProblems(svcs, tasks, procs); len(p) != 0 {
		t.Fatalf("converged cluster has problems: %v", p)
	}
	tasks["a"][2].Current = "running"
	procs = append(procs, TaskProc{PID: 3, Service: "a", Slot: "1"}, TaskProc{PID: 4, Service: "gone", Slot: "1"})
	p := ConvergenceProblems(svcs, tasks, procs)
	want := []string{"ps shows 3 running", "slot 1 has 2 running tasks", "3 task processes running", "a.1: 2 processes", "gone: 1 task processes running but the service does not exist"}
	for _, w := range want {
		found := false
		for _, x := range p {
			found = found || strings.Contains(x, w)
		}
		if !found {
			t.Errorf("missing problem %q in %v", w, p)
		}
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	hist := NewHistory()
	a := hist.Invoke(Op{Client: 0, F: FCreate, Key: "a", Value: 1})
	b := hist.Invoke(Op{Client: 1, F: FInspect, Key: "a"})
	hist.Complete(a, OK)
	ops := hist.Ops()
	if ops[0].Outcome != OK || ops[1].Outcome != Info || ops[1].Complete != -1 {
		t.Fatalf("pending op should read as info: %+v", ops)
	}
	if ops[0].Complete < ops[0].Invoke {
		t.Fatalf("clock went backwards: %+v", ops[0])
	}
	hist.Complete(b, Fail)
	path := filepath.Join(t.TempDir(), "history.json")
	if err := WriteJSON(path, hist.Ops()); err != nil {
		t.Fatal(err)
	}
	back, err := ReadHistory(path)
	if err != nil || len(back) != 2 || back[1].Outcome != Fail || back[0].Key != "a" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	c := CountOps(back)
	if c.Attempted != 2 || c.OK != 1 || c.Fail != 1 || c.WritesOK != 1 {
		t.Fatalf("counts %+v", c)
	}
}
