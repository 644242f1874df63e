package engine

import (
	"strconv"

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
