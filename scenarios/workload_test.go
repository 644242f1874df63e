package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCluster is an in-memory service table behind the CLI contract, with fault
// knobs, so the workload, the recording and the checkers are tested end to end
// without a daemon.
type fakeCluster struct {
	mu       sync.Mutex
	rng      *rand.Rand
	services map[string]int
	stale    map[string]int // a lagging replica's copy, for the buggy mode

	unknownPct  int  // writes answering "outcome unknown" (applied or not, at random)
	refusePct   int  // writes refused before anything happens
	lieOnRefuse bool // bug: a refused write is applied anyway
	staleReads  bool // bug: reads served from a lagging copy
}

func newFake(seed int64) *fakeCluster {
	return &fakeCluster{rng: rand.New(rand.NewSource(seed)), services: map[string]int{}, stale: map[string]int{}}
}

func (f *fakeCluster) roll(pct int) bool { return f.rng.Intn(100) < pct }

func (f *fakeCluster) Run(ctx context.Context, node string, timeout time.Duration, args ...string) CLIResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := CLIResult{Args: args}
	fail := func(msg string) CLIResult {
		r.Err = fmt.Errorf("exit status 1")
		r.Stderr = "Error: " + msg + "\n"
		return r
	}
	var apply func() string // returns a business error or ""
	switch {
	case args[1] == "create":
		name, n := args[3], args[5]
		apply = func() string {
			if _, ok := f.services[name]; ok {
				return "service " + name + " already exists"
			}
			f.services[name], _ = strconv.Atoi(n)
			return ""
		}
	case args[1] == "scale":
		name, n, _ := strings.Cut(args[2], "=")
		apply = func() string {
			if _, ok := f.services[name]; !ok {
				return "service " + name + " not found"
			}
			f.services[name], _ = strconv.Atoi(n)
			return ""
		}
	case args[1] == "rm":
		name := args[2]
		apply = func() string {
			if _, ok := f.services[name]; !ok {
				return "service " + name + " not found"
			}
			delete(f.services, name)
			return ""
		}
	case args[1] == "inspect":
		src := f.services
		if f.staleReads && f.roll(50) {
			src = f.stale
		}
		n, ok := src[args[2]]
		if !ok {
			return fail("service " + args[2] + " not found")
		}
		b, _ := json.Marshal([]any{map[string]any{"spec": map[string]any{"name": args[2], "replicas": n}}})
		r.Stdout = string(b)
		return r
	case args[1] == "ls":
		var rows []ServiceRow
		for name, n := range f.services {
			rows = append(rows, ServiceRow{Name: name, Desired: n, Running: n})
		}
		b, _ := json.Marshal(rows)
		r.Stdout = string(b)
		return r
	}
	// The lagging copy trails by one write.
	for k := range f.stale {
		delete(f.stale, k)
	}
	for k, v := range f.services {
		f.stale[k] = v
	}
	switch {
	case f.roll(f.refusePct):
		if f.lieOnRefuse {
			apply()
		}
		return fail("no quorum: 1 of 3 managers reachable")
	case f.roll(f.unknownPct):
		if f.roll(50) {
			apply()
		}
		return fail("outcome unknown: the change may or may not have been applied")
	}
	if msg := apply(); msg != "" {
		return fail(msg)
	}
	return r
}

func runFake(t *testing.T, f *fakeCluster) []Op {
	t.Helper()
	h := NewHistory()
	w := NewWorkload(WorkloadConfig{Nodes: []string{"n1", "n2", "n3"}, Clients: 4, Interval: time.Millisecond, Seed: 1}, f, h)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	return h.Ops()
}

func TestWorkloadHonestFake(t *testing.T) {
	f := newFake(1)
	f.unknownPct, f.refusePct = 10, 10
	ops := runFake(t, f)
	c := CountOps(ops)
	if c.Attempted < 50 || c.Info == 0 || c.Fail == 0 || c.WritesOK == 0 {
		t.Fatalf("workload too thin to mean anything: %+v", c)
	}
	f.mu.Lock()
	final := map[string]int{}
	for k, v := range f.services {
		final[k] = v
	}
	f.mu.Unlock()
	for _, v := range []Verdict{
		CheckLinearizable(ops, 30*time.Second, ""),
		CheckLostWrites(ops, final),
		CheckFailedNotApplied(ops),
	} {
		if v.Status != Pass {
			t.Errorf("honest system judged: %v", v)
		}
	}
	// Clients get a new ID after every info, and a client's operations never overlap.
	byClient := map[int][]Op{}
	for _, op := range ops {
		byClient[op.Client] = append(byClient[op.Client], op)
	}
	for id, cops := range byClient {
		for i := 1; i < len(cops); i++ {
			if cops[i-1].Outcome == Info {
				t.Fatalf("client %d continued after an info: %+v", id, cops[i])
			}
			if cops[i].Invoke < cops[i-1].Complete {
				t.Fatalf("client %d overlaps itself", id)
			}
		}
	}
}

func TestWorkloadCatchesLyingRefusals(t *testing.T) {
	f := newFake(2)
	f.refusePct, f.lieOnRefuse = 25, true
	ops := runFake(t, f)
	if v := CheckFailedNotApplied(ops); v.Status != Failed {
		t.Errorf("failed-not-applied missed refused writes that applied: %v", v)
	}
	if v := CheckLinearizable(ops, 30*time.Second, ""); v.Status != Failed {
		t.Errorf("linearizability missed refused writes that applied: %v", v)
	}
}

func TestWorkloadCatchesStaleReads(t *testing.T) {
	f := newFake(3)
	f.staleReads = true
	ops := runFake(t, f)
	if v := CheckLinearizable(ops, 30*time.Second, ""); v.Status != Failed {
		t.Errorf("linearizability missed stale reads: %v", v)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		f      string
		res    CLIResult
		want   Outcome
		kind   string
		exists bool
	}{
		{FScale, CLIResult{}, OK, "", false},
		{FScale, CLIResult{TimedOut: true, Err: fmt.Errorf("killed")}, Info, "", false},
		{FScale, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: outcome unknown: leadership lost\n"}, Info, "", false},
		{FScale, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: no quorum\n"}, Fail, "", false},
		{FScale, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: service x not found\n"}, Fail, ErrKindNotFound, false},
		{FCreate, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: service x already exists\n"}, Fail, ErrKindExists, false},
		{FInspect, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: service x not found\n"}, OK, ErrKindNotFound, false},
		{FInspect, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: cannot reach the swarmlet daemon at unix:///n1/swarmlet.sock: dial unix /n1/swarmlet.sock: connect: no such file or directory\n"}, Fail, "", false},
		{FInspect, CLIResult{Err: fmt.Errorf("exit 1"), Stderr: "Error: forward to 127.0.0.11:4240: dial tcp: connect: connection refused: not the leader\n"}, Fail, "", false},
		{FInspect, CLIResult{Stdout: `{"spec":{"name":"x","replicas":3}}`}, OK, "", true},
		{FInspect, CLIResult{Stdout: `[{"spec":{"name":"x"}}]`}, Fail, "", false},
	}
	for i, tc := range cases {
		p := &Op{F: tc.f}
		if got := classify(p, tc.res); got != tc.want || p.ErrKind != tc.kind || p.Exists != tc.exists {
			t.Errorf("case %d: got %s kind %q exists %v (%+v)", i, got, p.ErrKind, p.Exists, p)
		}
	}
}
