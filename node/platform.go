package node

import (
	"context"
	"maps"
	"runtime"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine/docker"
)

// describeEngine finds what this node registers of its engine, for the
// node.platform.* and engine.labels.* constraints: Docker's own platform and
// labels, or Go's platform for the process engine; --engine-label adds to the
// labels (and wins over the engine's own). A Docker engine that does not answer
// leaves Go's platform: the node still registers, and its engine's start
// reports the failure.
func (d *Daemon) describeEngine(ctx context.Context) {
	p := api.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	var labels map[string]string
	if d.engineKind == "docker" {
		if dp, dl, err := docker.Describe(ctx); err != nil {
			d.log.Warn("engine platform and labels unknown", "err", err)
		} else {
			p, labels = dp, dl
		}
	}
	if len(d.cfg.EngineLabels) > 0 {
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, d.cfg.EngineLabels)
	}
	d.platform, d.engineLabels = p, labels
}
