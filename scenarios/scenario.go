package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Scenario is one Jepsen-style run: a cluster, a workload, a nemesis applying and
// healing its fault on a schedule, then checks.
type Scenario struct {
	Name              string // also the results folder: results/<Name>
	Managers, Workers int
	Nemesis           Nemesis
	Cycles            int           // fault/heal cycles
	FaultFor, HealFor time.Duration // per cycle
	Clients           int           // default: one per node
	Short             bool          // part of the -short subset
	Seed              int64         // default: from the clock (logged, and SWL_SEED overrides)
	Env               []string      // extra daemon environment
	// Extra checks specific to the scenario, run after the common ones.
	Extra func(c *Cluster, faults []Fault) []Verdict
}

// Result is what a scenario run produced, for summaries.
type Result struct {
	Scenario    string        `json:"scenario"`
	Seed        int64         `json:"seed"`
	Counts      Counts        `json:"counts"`
	Verdicts    []Verdict     `json:"verdicts"`
	Convergence time.Duration `json:"convergence_ns"` // last write (workload stop, after heal) -> converged; -1 if never
	Agreement   time.Duration `json:"agreement_ns"`   // heal -> managers identical; -1 if never
	Notes       []string      `json:"notes,omitempty"`
	Failed      bool          `json:"failed"`
	At          time.Time     `json:"at"`
}

// Bounds after the final heal.
const (
	agreeBound    = 60 * time.Second
	convergeBound = 90 * time.Second
	orphanBound   = 30 * time.Second
	linTimeout    = 2 * time.Minute
)

// RunScenario runs sc as a subtest body and reports each checker's verdict; a
// failed verdict fails the test. Everything is written to results/<Name>/ even
// when the run dies half way.
func RunScenario(t *testing.T, sc Scenario) *Result {
	if testing.Short() && !sc.Short {
		t.Skip("not in the -short subset")
	}
	lockResults(t)
	if sc.Seed == 0 {
		sc.Seed = time.Now().UnixNano()
	}
	if s := os.Getenv("SWL_SEED"); s != "" {
		fmt.Sscan(s, &sc.Seed)
	}
	dir := filepath.Join("results", sc.Name)
	preserveFailed(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	t.Logf("seed %d (SWL_SEED=%d reruns it); results in %s", sc.Seed, sc.Seed, abs)

	clock := time.Now()
	hist := NewHistoryAt(clock)
	tl := NewTimeline(clock)
	res := &Result{Scenario: sc.Name, Seed: sc.Seed, Convergence: -1, Agreement: -1, At: time.Now()}

	c := NewCluster(t, ClusterConfig{Managers: sc.Managers, Workers: sc.Workers, ResultsDir: dir, Env: sc.Env}, clock)
	tl.Mark("cluster up")
	env := &Env{C: c, TL: tl, Rng: rand.New(rand.NewSource(sc.Seed)), Logf: t.Logf}

	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		c.RunSampler(sampleCtx, 250*time.Millisecond)
	}()
	// Written last thing, whatever happened before (t.Fatal included).
	defer func() {
		stopSampling()
		<-sampled
		res.Failed = t.Failed()
		writeResults(t, dir, sc, c, hist, tl, res)
		appendSummary(t, res)
	}()

	clients := sc.Clients
	if clients == 0 {
		clients = len(c.Nodes)
	}
	// Clients talk to managers: a worker's socket serves its own node only
	// (node/httpapi/caller.go).
	w := NewWorkload(WorkloadConfig{
		Nodes: names(c.Managers()), Clients: clients, Interval: 150 * time.Millisecond,
		Timeout: 10 * time.Second, Seed: sc.Seed,
	}, clusterRunner{c}, hist)
	wctx, stopWorkload := context.WithCancel(context.Background())
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		w.Run(wctx)
	}()
	defer func() { stopWorkload(); <-worked }()

	// The schedule is the experiment's design, not a wait for a condition.
	pause := func(d time.Duration) { <-time.After(d) }
	pause(sc.HealFor / 2) // a fault-free stretch first, to see the system healthy
	for i := 0; i < sc.Cycles; i++ {
		heal, err := sc.Nemesis.Inject(context.Background(), env)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("cycle %d: inject %s: %v", i, sc.Nemesis.Name, err))
			t.Errorf("inject %s: %v", sc.Nemesis.Name, err)
			break
		}
		pause(sc.FaultFor)
		if err := heal(); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("cycle %d: heal %s: %v", i, sc.Nemesis.Name, err))
			t.Errorf("heal %s: %v", sc.Nemesis.Name, err)
		}
		if i < sc.Cycles-1 {
			pause(sc.HealFor)
		}
	}
	res.Notes = append(res.Notes, HealAll(env)...)
	tl.Mark("final heal")
	healed := time.Now()
	pause(sc.HealFor / 2) // the workload keeps going over the healed cluster for a while
	stopWorkload()
	<-worked
	stopped := time.Now()
	tl.Mark("workload stopped")

	// Convergence first and timed from the last write: before it, the workload
	// itself keeps moving the desired state.
	res.Verdicts = append(res.Verdicts, checkConvergence(c, healed, stopped, res))
	tl.Mark("converged")
	res.Verdicts = append(res.Verdicts, checkAgreement(c, healed, res))
	final, fv := finalReads(c, w, hist)
	res.Verdicts = append(res.Verdicts, fv)
	res.Verdicts = append(res.Verdicts, checkDNS(c, final))
	res.Verdicts = append(res.Verdicts, checkOrphans(c, w, hist, final))

	stopSampling()
	<-sampled
	ops := hist.Ops()
	finalState := map[string]int{}
	for _, op := range ops {
		if op.Final && op.Outcome == OK && op.F == FList {
			finalState = op.Listing
			break
		}
	}
	res.Verdicts = append(res.Verdicts,
		CheckLinearizable(ops, linTimeout, filepath.Join(dir, "linearizability.html")),
		CheckLostWrites(stopAtFinal(ops), finalState),
		CheckFailedNotApplied(ops),
		CheckLeaders(c.Samples(), c.LogClaims(), c.Resolve),
		CheckDigests(c.Samples()),
		verdictFrom("no-crashes", append(c.Crashes(), c.LogPanics()...), "no daemon crashed, panicked or raced"),
	)
	if sc.Extra != nil {
		faults, _ := tl.Snapshot()
		res.Verdicts = append(res.Verdicts, sc.Extra(c, faults)...)
	}
	if c.HasNoDebug() {
		res.Notes = append(res.Notes, "the daemon has no /v1/debug/state: leader and digest checks rely on logs only")
	}
	res.Counts = CountOps(ops)
	t.Logf("%s: %d ops: %d ok, %d fail, %d info; convergence %v after the last write", sc.Name,
		res.Counts.Attempted, res.Counts.OK, res.Counts.Fail, res.Counts.Info, res.Convergence)
	for _, v := range res.Verdicts {
		if v.Status == Failed {
			t.Errorf("%v", v)
		} else {
			t.Logf("%v", v)
		}
	}
	return res
}

// stopAtFinal drops the cleanup writes (made after the final read) so the lost
// write check compares the final read with the writes before it.
func stopAtFinal(ops []Op) []Op {
	var out []Op
	for _, op := range ops {
		if op.Worker >= 0 || op.Final {
			out = append(out, op)
		}
	}
	return out
}

// Special workers of the harness's own operations, recorded like the clients'.
const (
	workerFinal   = -1
	workerCleanup = -2
)

// harnessOp runs one recorded operation outside the workload.
func harnessOp(c *Cluster, w *Workload, n *Node, worker int, op Op, final bool) (Op, Outcome) {
	op.Client = int(w.nextClient.Add(1)) - 1
	op.Worker, op.Node, op.Final = worker, n.Name, final
	var args []string
	switch op.F {
	case FList:
		args = []string{"service", "ls", "--format", "json"}
	case FRm:
		args = []string{"service", "rm", op.Key}
	}
	p := w.hist.Invoke(op)
	r := c.CLI(context.Background(), n, 10*time.Second, args...)
	o := classify(p, r)
	w.hist.Complete(p, o)
	return *p, o
}

// checkAgreement waits until every manager answers with the same index and digest.
func checkAgreement(c *Cluster, healed time.Time, res *Result) Verdict {
	v := Verdict{Checker: "managers-agree"}
	if c.HasNoDebug() {
		v.Status, v.Summary = Skipped, "no /v1/debug/state"
		return v
	}
	err := WaitFor(agreeBound, "every manager at the same index with the same digest", func() (bool, string) {
		ss := c.Sample(context.Background())
		if len(ss) < len(c.Managers()) {
			return false, fmt.Sprintf("%d of %d managers answered", len(ss), len(c.Managers()))
		}
		var parts []string
		same := true
		for _, s := range ss {
			parts = append(parts, fmt.Sprintf("%s@%d/%s term %d", s.Node, s.Index, short(s.Digest), s.Term))
			same = same && s.Index == ss[0].Index && s.Digest == ss[0].Digest && s.Leader != ""
		}
		return same, strings.Join(parts, ", ")
	})
	if err != nil {
		v.Status, v.Summary = Failed, err.Error()
		return v
	}
	res.Agreement = time.Since(healed)
	v.Status, v.Summary = Pass, fmt.Sprintf("identical index and digest on all managers %.2fs after heal", res.Agreement.Seconds())
	return v
}

// finalReads lists services through every manager once the cluster is healed (a
// worker's socket serves its own node only); the first answer through the leader
// is the final state.
func finalReads(c *Cluster, w *Workload, hist *History) (map[string]int, Verdict) {
	v := Verdict{Checker: "final-reads"}
	leader, err := c.WaitLeader(agreeBound)
	if err != nil {
		v.Status, v.Summary = Failed, err.Error()
		return nil, v
	}
	var final map[string]int
	order := append([]*Node{leader}, c.Managers()...)
	var problems []string
	for i, n := range order {
		if i > 0 && n == leader {
			continue
		}
		var got Op
		err := WaitFor(30*time.Second, "service ls through "+n.Name, func() (bool, string) {
			op, o := harnessOp(c, w, n, workerFinal, Op{F: FList}, true)
			got = op
			return o == OK, op.Err
		})
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if final == nil {
			final = got.Listing
		} else if fmt.Sprint(sortedListing(got.Listing)) != fmt.Sprint(sortedListing(final)) {
			problems = append(problems, fmt.Sprintf("%s lists %v, the leader %v", n, sortedListing(got.Listing), sortedListing(final)))
		}
	}
	if final == nil {
		final = map[string]int{}
	}
	return final, verdictFrom("final-reads", problems, fmt.Sprintf("every manager lists the same %d services after heal", len(final)))
}

func sortedListing(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// clusterView gathers the API's and the kernel's views of the services.
func clusterView(c *Cluster, via *Node) ([]ServiceRow, map[string][]TaskRow, []TaskProc, error) {
	r := c.CLI(context.Background(), via, 10*time.Second, "service", "ls", "--format", "json")
	if r.Err != nil {
		return nil, nil, nil, fmt.Errorf("%v", r)
	}
	svcs, err := parseServiceLS(r.Stdout)
	if err != nil {
		return nil, nil, nil, err
	}
	tasks := map[string][]TaskRow{}
	for _, s := range svcs {
		r := c.CLI(context.Background(), via, 10*time.Second, "service", "ps", "--format", "json", s.Name)
		if r.Err != nil {
			return nil, nil, nil, fmt.Errorf("%v", r)
		}
		var rows []TaskRow
		if err := jsonUnmarshal(r.Stdout, &rows); err != nil {
			return nil, nil, nil, fmt.Errorf("service ps %s: %v", s.Name, err)
		}
		tasks[s.Name] = rows
	}
	return svcs, tasks, c.TaskProcs(), nil
}

// checkConvergence waits until every service runs exactly its desired tasks, by
// the API and by the processes really running, and reports how long that took.
func checkConvergence(c *Cluster, healed, stopped time.Time, res *Result) Verdict {
	var last []string
	err := WaitFor(convergeBound, "convergence", func() (bool, string) {
		leader, err := c.Leader(context.Background())
		if err != nil {
			return false, err.Error()
		}
		svcs, tasks, procs, err := clusterView(c, leader)
		if err != nil {
			return false, err.Error()
		}
		last = ConvergenceProblems(svcs, tasks, procs)
		return len(last) == 0, strings.Join(last, "; ")
	})
	if err != nil {
		return Verdict{Checker: "convergence", Status: Failed, Summary: fmt.Sprintf("not converged %v after heal", convergeBound), Details: append([]string{err.Error()}, last...)}
	}
	res.Convergence = time.Since(stopped)
	return Verdict{Checker: "convergence", Status: Pass, Summary: fmt.Sprintf("running == desired, one task per slot, %.2fs after the last write (%.2fs after heal)", res.Convergence.Seconds(), time.Since(healed).Seconds())}
}

// checkOrphans removes every service and waits until no task process is left.
func checkOrphans(c *Cluster, w *Workload, hist *History, final map[string]int) Verdict {
	leader, err := c.WaitLeader(agreeBound)
	if err != nil {
		return Verdict{Checker: "no-orphans", Status: Failed, Summary: err.Error()}
	}
	var notes []string
	for _, name := range sortedKeys(final) {
		if _, o := harnessOp(c, w, leader, workerCleanup, Op{F: FRm, Key: name}, false); o != OK {
			notes = append(notes, "cleanup rm "+name+" did not succeed")
		}
	}
	start := time.Now()
	var procs []TaskProc
	err = WaitFor(orphanBound, "no task processes after removing every service", func() (bool, string) {
		procs = c.TaskProcs()
		return len(procs) == 0, fmt.Sprintf("%d left", len(procs))
	})
	if err != nil {
		return Verdict{Checker: "no-orphans", Status: Failed, Summary: err.Error(), Details: append(notes, OrphanProblems(procs)...)}
	}
	return Verdict{Checker: "no-orphans", Status: Pass, Summary: fmt.Sprintf("%d services removed, every task process gone within %.2fs", len(final), time.Since(start).Seconds()), Details: notes}
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func writeResults(t *testing.T, dir string, sc Scenario, c *Cluster, hist *History, tl *Timeline, res *Result) {
	ops := hist.Ops()
	if res.Counts.Attempted == 0 {
		res.Counts = CountOps(ops)
	}
	faults, marks := tl.Snapshot()
	samples := c.Samples()
	errs := []error{
		WriteJSON(filepath.Join(dir, "history.json"), ops),
		WriteJSON(filepath.Join(dir, "timeline.json"), map[string]any{"faults": faults, "marks": marks}),
		WriteJSON(filepath.Join(dir, "samples.json"), samples),
		WriteJSON(filepath.Join(dir, "verdicts.json"), res),
		os.WriteFile(filepath.Join(dir, "ruleset.txt"), []byte(c.ns.Ruleset()), 0o644),
	}
	f, err := os.Create(filepath.Join(dir, "timeline.html"))
	if err == nil {
		err = RenderHTML(f, Report{
			Title: fmt.Sprintf("%s (seed %d)", sc.Name, res.Seed), Ops: ops, Faults: faults, Marks: marks,
			Leaders: LeaderSpans(samples, c.Resolve), Verdicts: res.Verdicts, Counts: res.Counts, Notes: res.Notes,
		})
		f.Close()
	}
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil {
			t.Errorf("writing results: %v", err)
		}
	}
}

func jsonUnmarshal(s string, v any) error {
	s = strings.TrimSpace(s)
	if s == "" || s == "null" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

// preserveFailed makes room for a new run in dir, keeping a failed previous run
// aside (dir.failed-<seed>) rather than deleting the evidence.
func preserveFailed(dir string) {
	var prev Result
	b, err := os.ReadFile(filepath.Join(dir, "verdicts.json"))
	if err == nil && json.Unmarshal(b, &prev) == nil && prev.Failed {
		if os.Rename(dir, fmt.Sprintf("%s.failed-%d", dir, prev.Seed)) == nil {
			return
		}
	}
	os.RemoveAll(dir)
}

// summaryPath collects one line per run, so that repeated runs
// (go test -count=N) give convergence medians and worst cases.
const summaryPath = "results/summary.jsonl"

func appendSummary(t *testing.T, res *Result) {
	b, err := json.Marshal(res)
	if err == nil {
		var f *os.File
		f, err = os.OpenFile(summaryPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.Write(append(b, '\n'))
			f.Close()
		}
	}
	if err != nil {
		t.Errorf("summary: %v", err)
	}
}

// dnsBound is how long after convergence every node's DNS may take to agree.
const dnsBound = 30 * time.Second

// checkDNS waits until every node answers tasks.SERVICE with the addresses of the
// nodes running the service's tasks (as `service ps` places them).
func checkDNS(c *Cluster, final map[string]int) Verdict {
	if _, err := exec.LookPath("dig"); err != nil {
		return Verdict{Checker: "dns-agrees", Status: Skipped, Summary: "dig not installed"}
	}
	start := time.Now()
	err := WaitFor(dnsBound, "every node's DNS to answer tasks.SERVICE with the running tasks' nodes", func() (bool, string) {
		leader, err := c.Leader(context.Background())
		if err != nil {
			return false, err.Error()
		}
		_, tasks, _, err := clusterView(c, leader)
		if err != nil {
			return false, err.Error()
		}
		var bad []string
		for _, svc := range sortedKeys(final) {
			want := map[string]bool{}
			for _, t := range tasks[svc] {
				if t.Current == "running" {
					if n := c.Node(c.Resolve(t.Node)); n != nil {
						want[n.Addr] = true
					}
				}
			}
			wantList := sortedSet(want)
			for _, n := range c.Nodes {
				got, err := c.DNSAnswers(n, "tasks."+svc)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				if fmt.Sprint(got) != fmt.Sprint(wantList) {
					bad = append(bad, fmt.Sprintf("%s answers tasks.%s with %v, tasks run on %v", n, svc, got, wantList))
				}
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	})
	if err != nil {
		return Verdict{Checker: "dns-agrees", Status: Failed, Summary: fmt.Sprintf("DNS answers differ %v after convergence", dnsBound), Details: []string{err.Error()}}
	}
	return Verdict{Checker: "dns-agrees", Status: Pass, Summary: fmt.Sprintf("every node answers tasks.SERVICE for %d services with the running tasks' nodes, %.2fs after convergence", len(final), time.Since(start).Seconds())}
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var resultsLock sync.Once

// lockResults serialises scenario runs of concurrent test processes (two `go
// test` runs would otherwise write into the same results folders, and compete
// for the CPU the timings assume). Held until the process exits.
func lockResults(t *testing.T) {
	resultsLock.Do(func() {
		if err := os.MkdirAll("results", 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile("results/.lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			t.Log("another process is running scenarios; waiting for it")
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
				t.Fatal(err)
			}
		}
		// f stays open: the lock lives as long as the process.
	})
}

// Recheck runs the history checkers again on a saved run's folder.
func Recheck(dir string) ([]Verdict, error) {
	ops, err := ReadHistory(filepath.Join(dir, "history.json"))
	if err != nil {
		return nil, err
	}
	ops = Reclassify(ops)
	final := map[string]int{}
	for _, op := range ops {
		if op.Final && op.Outcome == OK && op.F == FList {
			final = op.Listing
			break
		}
	}
	return []Verdict{
		CheckLinearizable(ops, linTimeout, filepath.Join(dir, "linearizability.html")),
		CheckLostWrites(stopAtFinal(ops), final),
		CheckFailedNotApplied(ops),
	}, nil
}

// SummaryPath is where every scenario run appends its result line.
const SummaryPath = summaryPath
