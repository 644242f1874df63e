package worker

import (
	"context"
	"fmt"
	"runtime"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// startExpanded starts t with the templates of its spec ({{.Node.Hostname}},
// {{.Task.Slot}}, ...) expanded for this node: only the worker knows which
// node a task landed on. An expansion that fails, or gives an option an engine
// cannot take (a hostname made invalid by the node's name), rejects the task.
func (a *Agent) startExpanded(ctx context.Context, t *api.Task) (engine.Instance, error) {
	spec, err := t.ExpandedSpec(api.TemplateNode{ID: a.cfg.NodeID, Hostname: a.cfg.NodeHostname, OS: runtime.GOOS, Architecture: runtime.GOARCH})
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, err, engine.ErrRejected)
	}
	tc := t.Clone()
	tc.Spec = spec
	return a.cfg.Engine.Start(ctx, tc)
}
