package docker

import (
	"github.com/docker/docker/api/types/mount"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// fileMounts shows a task its secrets and configs: each file the node wrote
// (on its in-memory filesystem, engine.TaskFiles) bind-mounted read-only at
// its target, as Swarm does from the tmpfs it keeps per container. The file's
// owner and mode are the ones the reference asked for.
func fileMounts(root string, t *api.Task) []mount.Mount {
	var out []mount.Mount
	for _, f := range engine.TaskFiles(root, t) {
		out = append(out, mount.Mount{Type: mount.TypeBind, Source: f.Host, Target: f.Path, ReadOnly: true,
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}})
	}
	return out
}
