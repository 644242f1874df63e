// Package fake is an engine that runs nothing: a task is running the moment it is
// started, with knobs for the faults a control loop must survive (start errors,
// rejections, exits after a while). Hollow nodes (bench/hollow) run on it, so a
// thousand simulated nodes cost the managers what real ones do and their host
// almost nothing.
package fake

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Options are the engine's fault knobs; the zero value starts every task at once
// and keeps it running.
type Options struct {
	// StartDelay is how long Start takes.
	StartDelay time.Duration
	// RunFor, if set, ends each task that long after its start, with ExitCode.
	RunFor   time.Duration
	ExitCode int
	// RejectPrefix: an image starting with it is refused as unknown (REJECTED).
	RejectPrefix string
	// FailPrefix: an image starting with it fails to start (FAILED).
	FailPrefix string
}

// Engine keeps its workloads in a map.
type Engine struct {
	cfg  engine.Config
	opt  Options
	mu   sync.Mutex
	runs map[string]engine.Instance
	seq  uint64
	subs map[chan string]bool
}

var _ engine.Engine = (*Engine)(nil)

// New returns an engine serving the node cfg names.
func New(cfg engine.Config, opt Options) *Engine {
	return &Engine{cfg: cfg, opt: opt, runs: map[string]engine.Instance{}, subs: map[chan string]bool{}}
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return "fake" }

// Start implements engine.Engine: the workload runs at once, on the node's
// address, with a host port per published target port (numbered per engine, so
// that nodes sharing an address would clash as real ones would not: bench only).
func (e *Engine) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	if e.opt.StartDelay > 0 {
		select {
		case <-ctx.Done():
			return engine.Instance{}, ctx.Err()
		case <-time.After(e.opt.StartDelay):
		}
	}
	img := t.Spec.Image
	if e.opt.RejectPrefix != "" && strings.HasPrefix(img, e.opt.RejectPrefix) {
		return engine.Instance{}, fmt.Errorf("image %q: no such image: %w", img, engine.ErrRejected)
	}
	if e.opt.FailPrefix != "" && strings.HasPrefix(img, e.opt.FailPrefix) {
		return engine.Instance{}, fmt.Errorf("image %q: start failed", img)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if in, ok := e.runs[t.ID]; ok && in.State == api.TaskRunning {
		return in, nil
	}
	e.seq++
	in := engine.Instance{TaskID: t.ID, ServiceName: t.ServiceName, NodeID: e.cfg.NodeID, ID: fmt.Sprintf("fake-%d", e.seq),
		State: api.TaskRunning, Addr: e.cfg.NodeAddr, HostAddr: e.cfg.NodeAddr, ImageID: t.Spec.ImageID}
	for i, p := range t.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		in.Ports = append(in.Ports, api.PortBinding{Protocol: proto, TargetPort: p.TargetPort, HostPort: 20000 + int(e.seq%10000)*4 + i})
	}
	e.runs[t.ID] = in
	if e.opt.RunFor > 0 {
		id := t.ID
		time.AfterFunc(e.opt.RunFor, func() { e.exit(id) })
	}
	return in, nil
}

func (e *Engine) exit(taskID string) {
	e.mu.Lock()
	in, ok := e.runs[taskID]
	if !ok || in.State != api.TaskRunning {
		e.mu.Unlock()
		return
	}
	in.State, in.ExitCode = api.TaskComplete, e.opt.ExitCode
	if in.ExitCode != 0 {
		in.State = api.TaskFailed
	}
	e.runs[taskID] = in
	for ch := range e.subs {
		select {
		case ch <- taskID:
		default: // the worker also lists on a timer
		}
	}
	e.mu.Unlock()
}

// Stop implements engine.Engine.
func (e *Engine) Stop(_ context.Context, taskID string) error {
	e.mu.Lock()
	delete(e.runs, taskID)
	e.mu.Unlock()
	return nil
}

// List implements engine.Engine.
func (e *Engine) List(context.Context) ([]engine.Instance, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]engine.Instance, 0, len(e.runs))
	for _, in := range e.runs {
		out = append(out, in)
	}
	return out, nil
}

// Running counts the workloads running now.
func (e *Engine) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, in := range e.runs {
		if in.State == api.TaskRunning {
			n++
		}
	}
	return n
}

// Changes implements engine.Engine.
func (e *Engine) Changes(ctx context.Context) <-chan string {
	ch := make(chan string, 64)
	e.mu.Lock()
	e.subs[ch] = true
	e.mu.Unlock()
	context.AfterFunc(ctx, func() {
		e.mu.Lock()
		delete(e.subs, ch)
		close(ch)
		e.mu.Unlock()
	})
	return ch
}

// Logs implements engine.Engine: a fake workload writes nothing.
func (e *Engine) Logs(context.Context, string, engine.LogOptions, io.Writer) error { return nil }

// Close implements engine.Engine.
func (e *Engine) Close() error { return nil }
