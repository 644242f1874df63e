package scenarios

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// SvcState is the model's view of one service: whether it exists and its replica count.
type SvcState struct {
	Exists   bool
	Replicas int
}

func (s SvcState) String() string {
	if !s.Exists {
		return "absent"
	}
	return fmt.Sprintf("replicas=%d", s.Replicas)
}

// modelInput is what one porcupine operation carries. Writes keep their outcome in
// the input; reads carry the observed state as porcupine's output.
type modelInput struct {
	Key     string
	F       string // create, scale, rm, read
	Value   int
	Outcome Outcome
	ErrKind string
	Op      int // index in the recorded history, to point at it in reports
}

// fRead is the model's single read: inspect and ls both become reads of one key.
const fRead = "read"

// infinity closes an unknown-outcome operation: it may take effect at any time
// after its invocation, including never (after every other operation).
const infinity = math.MaxInt64

// refusalConsistent says whether a refusal with this kind could have happened in
// state s. Unclassified refusals (quorum lost, ...) are possible in any state.
func refusalConsistent(kind string, s SvcState) bool {
	switch kind {
	case ErrKindNotFound:
		return !s.Exists
	case ErrKindExists:
		return s.Exists
	}
	return true
}

// serviceStep is the sequential specification of one service. A refused write
// changes nothing; an unknown-outcome write does what the system would do had it
// been applied at that point (and, closed at infinity, it may also land after
// everything, which is the same as never).
func serviceStep(state, input, output any) (bool, any) {
	s := state.(SvcState)
	in := input.(modelInput)
	if in.F == fRead {
		return output.(SvcState) == s, s
	}
	if in.Outcome == Fail {
		return refusalConsistent(in.ErrKind, s), s
	}
	ok := in.Outcome == OK
	switch in.F {
	case FCreate:
		if s.Exists {
			// The system refuses a second create; an acknowledged one is illegal here.
			return !ok, s
		}
		return true, SvcState{Exists: true, Replicas: in.Value}
	case FScale:
		if !s.Exists {
			return !ok, s
		}
		return true, SvcState{Exists: true, Replicas: in.Value}
	case FRm:
		if !s.Exists {
			return !ok, s
		}
		return true, SvcState{}
	}
	panic("model: unknown function " + in.F)
}

// ServiceModel is the porcupine model of the service table, partitioned per service
// name: services are independent, so the history is linearizable iff each
// service's sub-history is.
var ServiceModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(modelInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return SvcState{} },
	Step: serviceStep,
	DescribeOperation: func(input, output any) string {
		in := input.(modelInput)
		if in.F == fRead {
			return fmt.Sprintf("#%d %s read -> %v", in.Op, in.Key, output)
		}
		v := ""
		if in.F != FRm {
			v = fmt.Sprintf("(%d)", in.Value)
		}
		e := ""
		if in.ErrKind != "" {
			e = " " + in.ErrKind
		}
		return fmt.Sprintf("#%d %s %s%s %s%s", in.Op, in.Key, in.F, v, in.Outcome, e)
	},
	DescribeState: func(state any) string { return state.(SvcState).String() },
}

// ToPorcupine turns a recorded history into porcupine operations. Writes keep all
// three outcomes (a refusal is a no-op, so a refused write that shows up later
// makes the history illegal); unknown outcomes stay open to infinity; failed and
// unknown reads say nothing and are dropped; a listing becomes one read per known
// service (the projection of a linearizable multi-key read is linearizable).
func ToPorcupine(ops []Op) []porcupine.Operation {
	keys := Keys(ops)
	var out []porcupine.Operation
	add := func(op Op, in modelInput, ret int64, output any) {
		out = append(out, porcupine.Operation{
			ClientId: op.Client,
			Input:    in,
			Call:     op.Invoke,
			Output:   output,
			Return:   ret,
		})
	}
	for _, op := range ops {
		switch {
		case IsWrite(op.F):
			ret := op.Complete
			if op.Outcome != OK && op.Outcome != Fail {
				ret = infinity
			}
			add(op, modelInput{Key: op.Key, F: op.F, Value: op.Value, Outcome: op.Outcome, ErrKind: op.ErrKind, Op: op.Index}, ret, nil)
		case op.Outcome != OK:
			// A read that failed or timed out observed nothing.
		case op.F == FInspect:
			add(op, modelInput{Key: op.Key, F: fRead, Op: op.Index}, op.Complete, SvcState{Exists: op.Exists, Replicas: op.Replicas})
		case op.F == FList:
			for _, k := range keys {
				r, ok := op.Listing[k]
				add(op, modelInput{Key: k, F: fRead, Op: op.Index}, op.Complete, SvcState{Exists: ok, Replicas: r})
			}
		}
	}
	return out
}

// CheckLinearizable runs porcupine over the history. vizPath, if set, receives
// porcupine's interactive HTML visualisation when the history is not found
// linearizable (the place to look when it fails).
func CheckLinearizable(ops []Op, timeout time.Duration, vizPath string) Verdict {
	v := Verdict{Checker: "linearizable"}
	pops := ToPorcupine(ops)
	res, info := porcupine.CheckOperationsVerbose(ServiceModel, pops, timeout)
	// The visualisation is megabytes: written only when there is something to see.
	if vizPath != "" && res != porcupine.Ok {
		if err := porcupine.VisualizePath(ServiceModel, info, vizPath); err != nil {
			v.Details = append(v.Details, "visualisation: "+err.Error())
		}
	}
	switch res {
	case porcupine.Ok:
		v.Status = Pass
		v.Summary = fmt.Sprintf("%d model operations over %d services: linearizable", len(pops), len(Keys(ops)))
	case porcupine.Unknown:
		v.Status = Unknown
		v.Summary = fmt.Sprintf("porcupine gave up after %v on %d operations", timeout, len(pops))
	default:
		v.Status = Failed
		v.Summary = "not linearizable: " + strings.Join(illegalKeys(pops), ", ")
		v.Details = append(v.Details, "see linearizability.html: the longest partial linearization of each illegal service, and the operation it cannot place")
	}
	return v
}

// illegalKeys names the services whose sub-history alone is not linearizable, so a
// report can point at them.
func illegalKeys(pops []porcupine.Operation) []string {
	var bad []string
	for _, part := range ServiceModel.Partition(pops) {
		if !porcupine.CheckOperations(porcupine.Model{Init: ServiceModel.Init, Step: ServiceModel.Step}, part) {
			bad = append(bad, part[0].Input.(modelInput).Key)
		}
	}
	return bad
}
