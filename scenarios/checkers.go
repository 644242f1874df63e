package scenarios

import (
	"fmt"
	"sort"
	"strings"
)

// Status of a checker's verdict.
type Status string

const (
	Pass    Status = "pass"
	Failed  Status = "fail"
	Unknown Status = "unknown" // the checker could not decide (timeout)
	Skipped Status = "skip"    // the data it needs was not available
)

// Verdict is one checker's conclusion, with enough detail to find the cause.
type Verdict struct {
	Checker string   `json:"checker"`
	Status  Status   `json:"status"`
	Summary string   `json:"summary"`
	Details []string `json:"details,omitempty"`
}

func (v Verdict) String() string {
	s := fmt.Sprintf("%-22s %-7s %s", v.Checker, strings.ToUpper(string(v.Status)), v.Summary)
	const maxDetails = 20
	for i, d := range v.Details {
		if i == maxDetails {
			s += fmt.Sprintf("\n    ... %d more (verdicts.json has all)", len(v.Details)-maxDetails)
			break
		}
		s += "\n    " + d
	}
	return s
}

func verdictFrom(checker string, problems []string, okSummary string) Verdict {
	if len(problems) == 0 {
		return Verdict{Checker: checker, Status: Pass, Summary: okSummary}
	}
	return Verdict{Checker: checker, Status: Failed, Summary: fmt.Sprintf("%d violation(s)", len(problems)), Details: problems}
}

// effect is the state a write leaves when applied to a state where it is valid.
func effect(op Op) SvcState {
	if op.F == FRm {
		return SvcState{}
	}
	return SvcState{Exists: true, Replicas: op.Value}
}

func describe(op Op) string {
	v := ""
	if op.F == FScale || op.F == FCreate {
		v = fmt.Sprintf("(%d)", op.Value)
	}
	t := fmt.Sprintf("[%.3fs", float64(op.Invoke)/1e9)
	if op.Complete >= 0 {
		t += fmt.Sprintf("-%.3fs", float64(op.Complete)/1e9)
	}
	t += "]"
	e := ""
	if op.Err != "" {
		e = ": " + op.Err
	}
	return fmt.Sprintf("#%d %s%s %s via %s client %d %s%s", op.Index, op.F, v, op.Outcome, op.Node, op.Client, t, e)
}

// readsOf returns, for key, every successful observation as (op, state).
func readsOf(ops []Op, key string) (obs []Op, states []SvcState) {
	for _, op := range ops {
		if op.Outcome != OK {
			continue
		}
		switch {
		case op.F == FInspect && op.Key == key:
			obs = append(obs, op)
			states = append(states, SvcState{Exists: op.Exists, Replicas: op.Replicas})
		case op.F == FList:
			r, ok := op.Listing[key]
			obs = append(obs, op)
			states = append(states, SvcState{Exists: ok, Replicas: r})
		}
	}
	return obs, states
}

func writesOf(ops []Op, key string) []Op {
	var ws []Op
	for _, op := range ops {
		if IsWrite(op.F) && op.Key == key {
			ws = append(ws, op)
		}
	}
	return ws
}

// CheckLostWrites compares each service's final state (read after the heal) with the
// writes that could have been last: every acknowledged or unknown write not
// strictly followed by an acknowledged write. If the final state is none of their
// effects, an acknowledged write was lost (or a phantom appeared). final maps a
// service to its final state; services absent from it are absent.
func CheckLostWrites(ops []Op, final map[string]int) Verdict {
	var problems []string
	for _, key := range Keys(ops) {
		ws := writesOf(ops, key)
		if len(ws) == 0 {
			continue
		}
		r, exists := final[key]
		got := SvcState{Exists: exists, Replicas: r}
		allowed := map[SvcState]bool{}
		var cands []string
		anyOK := false
		for _, w := range ws {
			if w.Outcome == OK {
				anyOK = true
			}
		}
		if !anyOK {
			allowed[SvcState{}] = true
			cands = append(cands, "initial(absent)")
		}
		for _, w := range ws {
			if w.Outcome == Fail {
				continue
			}
			// An unknown write may take effect at any time after its invocation,
			// so nothing supersedes it; an acknowledged one is superseded by an
			// acknowledged write that started after it ended.
			superseded := false
			for _, w2 := range ws {
				if w.Outcome == OK && w2.Outcome == OK && w2.Invoke > w.Complete {
					superseded = true
					break
				}
			}
			if superseded {
				continue
			}
			allowed[effect(w)] = true
			cands = append(cands, describe(w))
		}
		if !allowed[got] {
			problems = append(problems, fmt.Sprintf("%s: final state %v, but the last writes were: %s", key, got, strings.Join(cands, "; ")))
		}
	}
	return verdictFrom("no-lost-writes", problems, "every acknowledged write is reflected in the final state")
}

// CheckFailedNotApplied finds refused writes that later show up as applied. Values
// are unique per service, so a read of a value only a refused write wrote proves
// the refusal lied; a refused rm lied if the service vanished with no other rm.
func CheckFailedNotApplied(ops []Op) Verdict {
	var problems []string
	for _, key := range Keys(ops) {
		ws := writesOf(ops, key)
		obs, states := readsOf(ops, key)
		produced := map[SvcState]bool{}
		rmPossible := false
		createPossible := false
		for _, w := range ws {
			if w.Outcome == Fail {
				continue
			}
			produced[effect(w)] = true
			rmPossible = rmPossible || w.F == FRm
			createPossible = createPossible || w.F == FCreate
		}
		for _, w := range ws {
			if w.Outcome != Fail {
				continue
			}
			for i, st := range states {
				if obs[i].Invoke < w.Invoke {
					continue
				}
				switch {
				case w.F == FRm && !st.Exists && !rmPossible && seenExistsBefore(obs, states, obs[i].Invoke):
					problems = append(problems, fmt.Sprintf("%s: refused %s, yet read #%d found the service gone and no other rm was attempted", key, describe(w), obs[i].Index))
				case w.F == FCreate && st.Exists && !createPossible:
					problems = append(problems, fmt.Sprintf("%s: refused %s, yet read #%d found it existing (%v) and no other create was attempted", key, describe(w), obs[i].Index, st))
				case w.F != FRm && st.Exists && st == effect(w) && !produced[st]:
					problems = append(problems, fmt.Sprintf("%s: refused %s, yet read #%d observed its value (%v)", key, describe(w), obs[i].Index, st))
				default:
					continue
				}
				break
			}
		}
	}
	return verdictFrom("failed-not-applied", problems, "no refused write shows up as applied")
}

func seenExistsBefore(obs []Op, states []SvcState, before int64) bool {
	for i, st := range states {
		if st.Exists && obs[i].Complete < before {
			return true
		}
	}
	return false
}

// StateSample is one poll of a node's /v1/debug/state.
type StateSample struct {
	T      int64  `json:"t_ns"`
	Node   string `json:"node"`
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Leader string `json:"leader"`
	Digest string `json:"digest"`
}

// LeaderClaim says that Node won the election for Term (from its log).
type LeaderClaim struct {
	Node   string `json:"node"`
	Term   uint64 `json:"term"`
	Source string `json:"source"`
}

// CheckLeaders verifies Raft's election safety: at most one leader per term.
// Election wins in the logs are authoritative. Leaders named in state samples are
// only corroboration: hashicorp/raft bumps a node's term (on a vote request)
// before it forgets the old leader, so a sample can pair the old leader with the
// new term; disagreements there are reported as notes, not violations. resolve
// maps the many spellings of a node (ID, address) to one name; nil keeps them.
func CheckLeaders(samples []StateSample, claims []LeaderClaim, resolve func(string) string) Verdict {
	v := checkLeadersFrom(nil, claims, resolve)
	if v.Status == Failed {
		return v
	}
	sv := checkLeadersFrom(samples, claims, resolve)
	if sv.Status == Failed {
		for _, d := range sv.Details {
			v.Details = append(v.Details, "note (state samples, not authoritative): "+d)
		}
	}
	if v.Status == Skipped && sv.Status != Skipped {
		v.Status, v.Summary = Skipped, "no election wins in the logs; "+sv.Summary
	}
	return v
}

func checkLeadersFrom(samples []StateSample, claims []LeaderClaim, resolve func(string) string) Verdict {
	if resolve == nil {
		resolve = func(s string) string { return s }
	}
	leaders := map[uint64]map[string][]string{} // term -> leader -> who said so
	for _, s := range samples {
		if s.Leader == "" || s.Term == 0 {
			continue
		}
		l := resolve(s.Leader)
		if leaders[s.Term] == nil {
			leaders[s.Term] = map[string][]string{}
		}
		leaders[s.Term][l] = appendUnique(leaders[s.Term][l], "state of "+s.Node)
	}
	for _, c := range claims {
		l := resolve(c.Node)
		if leaders[c.Term] == nil {
			leaders[c.Term] = map[string][]string{}
		}
		leaders[c.Term][l] = appendUnique(leaders[c.Term][l], c.Source)
	}
	terms := make([]uint64, 0, len(leaders))
	for t := range leaders {
		terms = append(terms, t)
	}
	sort.Slice(terms, func(i, j int) bool { return terms[i] < terms[j] })
	var problems []string
	for _, t := range terms {
		if len(leaders[t]) > 1 {
			var parts []string
			for l, who := range leaders[t] {
				parts = append(parts, fmt.Sprintf("%s (per %s)", l, strings.Join(who, ", ")))
			}
			sort.Strings(parts)
			problems = append(problems, fmt.Sprintf("term %d has %d leaders: %s", t, len(parts), strings.Join(parts, "; ")))
		}
	}
	if len(terms) == 0 {
		return Verdict{Checker: "one-leader-per-term", Status: Skipped, Summary: "no leader observations"}
	}
	return verdictFrom("one-leader-per-term", problems, fmt.Sprintf("%d terms observed (%d..%d), one leader each", len(terms), terms[0], terms[len(terms)-1]))
}

func appendUnique(xs []string, x string) []string {
	for _, y := range xs {
		if y == x {
			return xs
		}
	}
	return append(xs, x)
}

// CheckDigests verifies that the FSM is deterministic as seen from outside: any two
// samples at the same applied index carry the same digest, whichever node and
// whenever they were taken.
func CheckDigests(samples []StateSample) Verdict {
	type seen struct {
		digest string
		s      StateSample
	}
	first := map[uint64]seen{}
	var problems []string
	reported := map[uint64]bool{}
	for _, s := range samples {
		if s.Digest == "" || s.Index == 0 {
			continue
		}
		f, ok := first[s.Index]
		if !ok {
			first[s.Index] = seen{s.Digest, s}
			continue
		}
		if f.digest != s.Digest && !reported[s.Index] {
			reported[s.Index] = true
			problems = append(problems, fmt.Sprintf("index %d: %s has digest %s at %.3fs, %s has %s at %.3fs",
				s.Index, f.s.Node, short(f.digest), float64(f.s.T)/1e9, s.Node, short(s.Digest), float64(s.T)/1e9))
		}
	}
	if len(first) == 0 {
		return Verdict{Checker: "same-index-same-digest", Status: Skipped, Summary: "no digests sampled"}
	}
	return verdictFrom("same-index-same-digest", problems, fmt.Sprintf("%d distinct indexes sampled, digests agree", len(first)))
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// ServiceRow is one row of `service ls --format json`.
type ServiceRow struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Mode     string `json:"mode"`
	Running  int    `json:"running"`
	Desired  int    `json:"desired"`
	Replicas any    `json:"replicas"`
}

// TaskRow is one row of `service ps --format json`.
type TaskRow struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Node    string `json:"node"`
	Desired string `json:"desired"`
	Current string `json:"current"`
	Error   string `json:"error"`
	Service string `json:"service"`
	Slot    int    `json:"slot"`
}

// TaskProc is a task process found in /proc: the ground truth of what runs.
type TaskProc struct {
	PID     int    `json:"pid"`
	TaskID  string `json:"task_id"`
	Service string `json:"service"`
	Slot    string `json:"slot"`
	NodeID  string `json:"node_id"`
}

// ConvergenceProblems lists why the cluster has not converged: a service whose
// running count differs from desired (per the API and per the processes really
// running), a slot with two running tasks, or task processes of unknown services.
// An empty result means converged.
func ConvergenceProblems(services []ServiceRow, tasks map[string][]TaskRow, procs []TaskProc) []string {
	var problems []string
	known := map[string]bool{}
	for _, s := range services {
		known[s.Name] = true
		if s.Running != s.Desired {
			problems = append(problems, fmt.Sprintf("%s: ls says running %d, desired %d", s.Name, s.Running, s.Desired))
		}
		running := 0
		slots := map[int][]string{}
		for _, t := range tasks[s.Name] {
			if t.Current == "running" {
				running++
				slots[t.Slot] = append(slots[t.Slot], t.ID)
			}
		}
		if tasks != nil && running != s.Desired {
			problems = append(problems, fmt.Sprintf("%s: ps shows %d running tasks, desired %d", s.Name, running, s.Desired))
		}
		for slot, ids := range slots {
			if len(ids) > 1 {
				problems = append(problems, fmt.Sprintf("%s: slot %d has %d running tasks %v", s.Name, slot, len(ids), ids))
			}
		}
	}
	if procs != nil {
		perSvc := map[string]int{}
		perSlot := map[string][]int{}
		for _, p := range procs {
			perSvc[p.Service]++
			k := p.Service + "." + p.Slot
			perSlot[k] = append(perSlot[k], p.PID)
		}
		for _, s := range services {
			if perSvc[s.Name] != s.Desired {
				problems = append(problems, fmt.Sprintf("%s: %d task processes running, desired %d", s.Name, perSvc[s.Name], s.Desired))
			}
		}
		for k, pids := range perSlot {
			if len(pids) > 1 {
				problems = append(problems, fmt.Sprintf("%s: %d processes for one slot, pids %v", k, len(pids), pids))
			}
		}
		for svc, n := range perSvc {
			if !known[svc] {
				problems = append(problems, fmt.Sprintf("%s: %d task processes running but the service does not exist", svc, n))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// OrphanProblems lists task processes that should not exist once every service in
// removed is gone.
func OrphanProblems(procs []TaskProc) []string {
	var problems []string
	for _, p := range procs {
		problems = append(problems, fmt.Sprintf("pid %d: task %s of service %s slot %s (node %s) still running", p.PID, p.TaskID, p.Service, p.Slot, p.NodeID))
	}
	return problems
}
