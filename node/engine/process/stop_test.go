package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/node/engine"
)

// The spec's stop signal is sent first, and its grace period (not the engine's
// default) is how long Stop waits before the kill; both survive an adoption.
func TestStopUsesSpecSignalAndGrace(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, engine.Config{DataDir: dir})
	got := filepath.Join(t.TempDir(), "signal")
	// INT is noted and ignored; TERM is ignored: only the kill ends it.
	ready := filepath.Join(t.TempDir(), "ready")
	task := shTask("t-sig", "trap 'echo INT > "+got+"' INT; trap '' TERM; touch "+ready+"; while true; do sleep 0.05; done")
	grace := 400 * time.Millisecond
	task.Spec.StopSignal, task.Spec.StopGracePeriod = "SIGINT", &grace
	if _, err := e.Start(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	// A signal before the shell has set its traps would simply end it.
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
		if time.Now().After(deadline) {
			t.Fatal("the task's shell never set its traps")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A new engine over the same data dir adopts the process with its settings.
	e.Close()
	e2 := newEngine(t, engine.Config{DataDir: dir})
	start := time.Now()
	if err := e2.Stop(context.Background(), "t-sig"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < grace || took > grace+3*time.Second {
		t.Fatalf("stop took %v, want about the spec's grace %v (the engine's own is %v)", took, grace, e2.StopTimeout)
	}
	if b, err := os.ReadFile(got); err != nil || string(b) != "INT\n" {
		t.Fatalf("the task did not get SIGINT first: %q %v", b, err)
	}
}

func TestUnknownStopSignalRejected(t *testing.T) {
	e := newEngine(t, engine.Config{})
	task := shTask("t-badsig", "sleep 10")
	task.Spec.StopSignal = "SIGNOPE"
	if _, err := e.Start(context.Background(), task); !errors.Is(err, engine.ErrRejected) {
		t.Fatalf("start with an unknown stop signal: %v", err)
	}
}
