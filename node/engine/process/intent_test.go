package process

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/node/engine"
)

// A daemon killed between starting a process and recording it leaves an intent
// file and a process no record names: the next engine on that dir kills it.
func TestUnrecordedStartIsReaped(t *testing.T) {
	dir := t.TempDir()
	e, err := New(engine.Config{NodeID: "n1", NodeAddr: "127.0.0.1", DataDir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.writeIntent("lost"); err != nil {
		t.Fatal(err)
	}
	e.Close()
	orphan := exec.Command("sleep", "1000")
	orphan.Env = append(os.Environ(), "SWARMLET_TASK_ID=lost", "SWARMLET_NODE_ID=n1")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = orphan.Wait(); close(exited) }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	// Another node's process with the same task ID is not ours to kill.
	other := exec.Command("sleep", "1000")
	other.Env = append(os.Environ(), "SWARMLET_TASK_ID=lost", "SWARMLET_NODE_ID=n2")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })

	e2, err := New(engine.Config{NodeID: "n1", NodeAddr: "127.0.0.1", DataDir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the unrecorded process still runs")
	}
	if _, err := os.Stat(e2.intentPath("lost")); !os.IsNotExist(err) {
		t.Fatalf("intent file left: %v", err)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("another node's process was killed: %v", err)
	}
}
