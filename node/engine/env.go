package engine

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/swarmlet/swarmlet/api"
)

// TaskEnv is the environment every engine gives a task: the spec's K=V pairs, then
// the SWARMLET_* variables, which come last so that a spec cannot spoof them.
func TaskEnv(cfg Config, t *api.Task) []string {
	env := make([]string, 0, len(t.Spec.Env)+7)
	env = append(env, t.Spec.Env...)
	env = append(env,
		"SWARMLET_TASK_ID="+t.ID,
		"SWARMLET_SERVICE="+t.ServiceName,
		"SWARMLET_SLOT="+strconv.FormatUint(t.Slot, 10),
		"SWARMLET_NODE_ID="+cfg.NodeID,
		"SWARMLET_ADDR="+cfg.NodeAddr,
	)
	if cfg.DNS != "" {
		env = append(env, "SWARMLET_DNS="+cfg.DNS)
	}
	return env
}

// Labels are the labels every engine puts on a task's workload.
func Labels(cfg Config, t *api.Task) map[string]string {
	return map[string]string{
		LabelTask:    t.ID,
		LabelService: t.ServiceName,
		LabelNode:    cfg.NodeID,
		LabelSlot:    strconv.FormatUint(t.Slot, 10),
	}
}

// LabelStopGrace carries a task's stop grace period on its workload, so a stop
// (even by a restarted daemon, adopting it) waits as the spec said.
const LabelStopGrace = "swarmlet.stop-grace"

// StopSignal resolves a spec's stop signal: a name with or without SIG, or a
// number; "" is SIGTERM.
func StopSignal(name string) (syscall.Signal, error) {
	if name == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	if sig := unix.SignalNum(n); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown stop signal %q: %w", name, ErrRejected)
}
