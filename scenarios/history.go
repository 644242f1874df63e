package scenarios

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Outcome is how an operation ended, in Jepsen's vocabulary.
type Outcome string

const (
	// Pending marks an operation that was invoked and has not completed yet.
	Pending Outcome = "invoke"
	// OK: the system acknowledged the operation.
	OK Outcome = "ok"
	// Fail: the system refused the operation and guarantees nothing changed.
	Fail Outcome = "fail"
	// Info: the outcome is unknown (the system said so, or the client timed out).
	Info Outcome = "info"
)

// Operation functions the workload performs.
const (
	FCreate  = "create"
	FScale   = "scale"
	FRm      = "rm"
	FInspect = "inspect"
	FList    = "ls"
)

// IsWrite reports whether f changes state.
func IsWrite(f string) bool { return f == FCreate || f == FScale || f == FRm }

// Error kinds that carry information about the state a refusal saw. The model uses
// them: "not found" means the service did not exist, "exists" that it did.
const (
	ErrKindNotFound = "notfound"
	ErrKindExists   = "exists"
)

// Op is one operation of a history: its invocation and its completion together.
// Times are nanoseconds on the history's monotonic clock.
type Op struct {
	Index    int     `json:"index"`
	Client   int     `json:"client"` // process in Jepsen's sense: renewed after an info
	Worker   int     `json:"worker"` // the workload goroutine that issued it
	Node     string  `json:"node"`   // the node the request went through
	F        string  `json:"f"`
	Key      string  `json:"key,omitempty"`   // service name
	Value    int     `json:"value,omitempty"` // replicas written (create, scale)
	Outcome  Outcome `json:"type"`
	Invoke   int64   `json:"invoke_ns"`
	Complete int64   `json:"complete_ns"` // -1 while pending

	// Read results. Inspect: Exists and Replicas. List: Listing (name -> replicas).
	Exists   bool           `json:"exists,omitempty"`
	Replicas int            `json:"replicas,omitempty"`
	Listing  map[string]int `json:"listing,omitempty"`

	Err     string `json:"error,omitempty"`
	ErrKind string `json:"error_kind,omitempty"`
	Final   bool   `json:"final,omitempty"` // a read made after the final heal
}

// History records operations concurrently, stamped by one monotonic clock.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []*Op
}

// NewHistory starts a history whose clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// NewHistoryAt starts a history on a clock shared with other recorders.
func NewHistoryAt(start time.Time) *History { return &History{start: start} }

// Now is the history's clock: nanoseconds since its start, monotonic.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Start is the instant the clock counts from.
func (h *History) Start() time.Time { return h.start }

// Invoke records the start of op and returns it; the caller fills the results and
// calls Complete. The op must not be touched by the caller after Complete.
func (h *History) Invoke(op Op) *Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Index = len(h.ops)
	op.Outcome = Pending
	op.Complete = -1
	op.Invoke = h.Now()
	p := &op
	h.ops = append(h.ops, p)
	return p
}

// Complete stamps op's completion with outcome o.
func (h *History) Complete(op *Op, o Outcome) {
	now := h.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Outcome = o
	op.Complete = now
}

// Ops returns a copy of the operations in invocation order. Operations still
// pending are returned as info: their outcome is unknown.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Op, len(h.ops))
	for i, p := range h.ops {
		out[i] = *p
		if out[i].Outcome == Pending {
			out[i].Outcome = Info
		}
	}
	return out
}

// Counts summarises a history.
type Counts struct {
	Attempted int `json:"attempted"`
	OK        int `json:"ok"`
	Fail      int `json:"fail"`
	Info      int `json:"info"`
	Writes    int `json:"writes"`
	WritesOK  int `json:"writes_ok"`
}

// CountOps tallies outcomes.
func CountOps(ops []Op) Counts {
	var c Counts
	for _, op := range ops {
		c.Attempted++
		switch op.Outcome {
		case OK:
			c.OK++
		case Fail:
			c.Fail++
		default:
			c.Info++
		}
		if IsWrite(op.F) {
			c.Writes++
			if op.Outcome == OK {
				c.WritesOK++
			}
		}
	}
	return c
}

// Keys returns the service names a history touches, sorted.
func Keys(ops []Op) []string {
	seen := map[string]bool{}
	for _, op := range ops {
		if op.Key != "" {
			seen[op.Key] = true
		}
		for k := range op.Listing {
			seen[k] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WriteJSON writes v indented to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadHistory loads a history.json written by WriteJSON, so checkers can be rerun
// on a saved history.
func ReadHistory(path string) ([]Op, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ops []Op
	return ops, json.Unmarshal(b, &ops)
}

// Reclassify re-derives error kinds (and with them the outcome of a not-found
// inspect) from the recorded error text, so a saved history can be checked again
// after the harness's classification improves.
func Reclassify(ops []Op) []Op {
	out := append([]Op(nil), ops...)
	for i := range out {
		op := &out[i]
		if op.Err == "" || strings.HasPrefix(op.Err, "client timeout") || strings.HasPrefix(op.Err, "harness: ") {
			continue
		}
		op.ErrKind = errKind(op.Err)
		if op.F == FInspect && op.Outcome == OK && op.ErrKind != ErrKindNotFound {
			op.Outcome, op.Exists = Fail, false
		}
	}
	return out
}
