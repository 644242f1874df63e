package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Runner executes one CLI operation against a node. The cluster implements it;
// tests can fake it.
type Runner interface {
	Run(ctx context.Context, node string, timeout time.Duration, args ...string) CLIResult
}

// clusterRunner adapts a Cluster to Runner.
type clusterRunner struct{ c *Cluster }

func (r clusterRunner) Run(ctx context.Context, node string, timeout time.Duration, args ...string) CLIResult {
	return r.c.CLI(ctx, r.c.Node(node), timeout, args...)
}

// WorkloadConfig shapes the client load.
type WorkloadConfig struct {
	Nodes     []string      // client i talks to Nodes[i % len]
	Clients   int           // concurrent clients
	Interval  time.Duration // pause between one client's operations
	Timeout   time.Duration // a client gives up (info) after this
	Seed      int64
	Program   []string // IMAGE [ARGS...] of created services
	MinActive int      // services kept alive so clients contend on them
	MaxActive int
}

// key is one service's life: a unique name, and unique replica values to write.
type key struct {
	name   string
	values []int // not yet written, each used once so a value identifies its write
}

// Workload drives concurrent clients doing service create/scale/rm and reads,
// recording every operation in a History.
type Workload struct {
	cfg  WorkloadConfig
	run  Runner
	hist *History

	nextClient atomic.Int64

	mu      sync.Mutex
	seq     int
	active  []*key
	retired []*key
}

// NewWorkload prepares a workload; Run starts it.
func NewWorkload(cfg WorkloadConfig, run Runner, hist *History) *Workload {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinActive == 0 {
		cfg.MinActive = 2
	}
	if cfg.MaxActive == 0 {
		cfg.MaxActive = 4
	}
	if len(cfg.Program) == 0 {
		cfg.Program = []string{"/bin/sleep", "100000"}
	}
	w := &Workload{cfg: cfg, run: run, hist: hist}
	w.nextClient.Store(int64(cfg.Clients))
	return w
}

// Run runs the clients until ctx ends; operations in flight then finish (or time
// out) on their own, so none is cut short and mislabelled.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < w.cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *Workload) client(ctx context.Context, worker int) {
	rng := rand.New(rand.NewSource(w.cfg.Seed + int64(worker)*7919))
	node := w.cfg.Nodes[worker%len(w.cfg.Nodes)]
	client := worker
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		op := w.next(rng)
		op.Client, op.Worker, op.Node = client, worker, node
		if w.do(op) == Info {
			// Porcupine needs a client's operations not to overlap; an unknown
			// outcome may still be in flight, so continue as a new client.
			client = int(w.nextClient.Add(1)) - 1
		}
		// Jitter spreads clients over time so their operations interleave.
		timer.Reset(w.cfg.Interval/2 + time.Duration(rng.Int63n(int64(w.cfg.Interval)+1)))
	}
}

// next picks an operation: keep a few services alive, and mostly scale and read
// them so clients contend on the same services.
func (w *Workload) next(rng *rand.Rand) Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := rng.Intn(100)
	switch {
	case len(w.active) < w.cfg.MinActive || (r < 12 && len(w.active) < w.cfg.MaxActive):
		w.seq++
		k := &key{name: fmt.Sprintf("svc%03d", w.seq), values: rng.Perm(6)}
		w.active = append(w.active, k)
		v := k.values[0]
		k.values = k.values[1:]
		return Op{F: FCreate, Key: k.name, Value: v % 4} // start small: 0..3 replicas
	case r < 45:
		i := rng.Intn(len(w.active))
		k := w.active[i]
		if len(k.values) == 0 {
			return w.rmLocked(i)
		}
		v := k.values[0]
		k.values = k.values[1:]
		return Op{F: FScale, Key: k.name, Value: v}
	case r < 52:
		return w.rmLocked(rng.Intn(len(w.active)))
	case r < 80:
		pool := append(append([]*key(nil), w.active...), w.retired[max(0, len(w.retired)-3):]...)
		return Op{F: FInspect, Key: pool[rng.Intn(len(pool))].name}
	default:
		return Op{F: FList}
	}
}

func (w *Workload) rmLocked(i int) Op {
	k := w.active[i]
	w.active = append(w.active[:i], w.active[i+1:]...)
	w.retired = append(w.retired, k)
	return Op{F: FRm, Key: k.name}
}

// Keys returns every service name the workload has used.
func (w *Workload) KeysUsed() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ks []string
	for _, k := range append(append([]*key(nil), w.active...), w.retired...) {
		ks = append(ks, k.name)
	}
	return ks
}

// do performs op, records it, and returns its outcome.
func (w *Workload) do(op Op) Outcome {
	var args []string
	switch op.F {
	case FCreate:
		args = append([]string{"service", "create", "--name", op.Key, "--replicas", strconv.Itoa(op.Value), "--detach"}, w.cfg.Program...)
	case FScale:
		args = []string{"service", "scale", fmt.Sprintf("%s=%d", op.Key, op.Value), "--detach"}
	case FRm:
		args = []string{"service", "rm", op.Key}
	case FInspect:
		args = []string{"service", "inspect", op.Key}
	case FList:
		args = []string{"service", "ls", "--format", "json"}
	}
	p := w.hist.Invoke(op)
	res := w.run.Run(context.Background(), op.Node, w.cfg.Timeout, args...)
	outcome := classify(p, res)
	w.hist.Complete(p, outcome)
	return outcome
}

// classify turns a CLI result into an outcome, filling p's results and error.
func classify(p *Op, res CLIResult) Outcome {
	if res.TimedOut {
		p.Err = fmt.Sprintf("client timeout: %s", strings.TrimSpace(res.Stderr))
		return Info
	}
	if res.Err != nil {
		p.Err = res.ErrorLine()
		p.ErrKind = errKind(p.Err)
		if p.F == FInspect && p.ErrKind == ErrKindNotFound {
			// A read that finds nothing has observed absence.
			p.Exists = false
			return OK
		}
		if strings.Contains(strings.ToLower(res.Stderr), "outcome unknown") {
			return Info
		}
		return Fail
	}
	switch p.F {
	case FInspect:
		st, err := parseInspect(res.Stdout)
		if err != nil {
			p.Err = "harness: " + err.Error()
			return Fail
		}
		p.Exists, p.Replicas = st.Exists, st.Replicas
	case FList:
		rows, err := parseServiceLS(res.Stdout)
		if err != nil {
			p.Err = "harness: " + err.Error()
			return Fail
		}
		p.Listing = map[string]int{}
		for _, r := range rows {
			p.Listing[r.Name] = r.Desired
		}
	}
	return OK
}

// errKind recognises refusals that say something about the state they saw.
func errKind(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "outcome unknown"), strings.Contains(m, "cannot reach"),
		strings.Contains(m, "no such file"), strings.Contains(m, "not the leader"), strings.Contains(m, "quorum"):
		// Transport and leadership trouble says nothing about the service
		// (a missing socket file is no missing service).
		return ""
	case strings.Contains(m, "not found"):
		return ErrKindNotFound
	case strings.Contains(m, "already exists") || strings.Contains(m, "name taken") || strings.Contains(m, "in use"):
		return ErrKindExists
	}
	return ""
}

// parseInspect reads `service inspect NAME`: a JSON object or a one-element array
// (docker's shape), with the replica count in spec.replicas.
func parseInspect(out string) (SvcState, error) {
	out = strings.TrimSpace(out)
	type svc struct {
		Spec struct {
			Name     string  `json:"name"`
			Replicas *uint64 `json:"replicas"`
		} `json:"spec"`
	}
	var one svc
	if strings.HasPrefix(out, "[") {
		var many []svc
		if err := json.Unmarshal([]byte(out), &many); err != nil {
			return SvcState{}, fmt.Errorf("inspect output: %v", err)
		}
		if len(many) != 1 {
			return SvcState{}, fmt.Errorf("inspect returned %d services", len(many))
		}
		one = many[0]
	} else if err := json.Unmarshal([]byte(out), &one); err != nil {
		return SvcState{}, fmt.Errorf("inspect output: %v", err)
	}
	if one.Spec.Replicas == nil {
		return SvcState{}, fmt.Errorf("inspect output has no spec.replicas: %.200s", out)
	}
	return SvcState{Exists: true, Replicas: int(*one.Spec.Replicas)}, nil
}

func parseServiceLS(out string) ([]ServiceRow, error) {
	var rows []ServiceRow
	out = strings.TrimSpace(out)
	if out == "" || out == "null" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("service ls output: %v", err)
	}
	return rows, nil
}
