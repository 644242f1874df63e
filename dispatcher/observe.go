package dispatcher

import (
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// PassFunc observes one control-loop pass: how long planning and committing
// took, and the ops proposed (none if the pass found nothing to do). The node
// feeds its metrics with it; it must be cheap and must not block.
type PassFunc func(d time.Duration, ops []api.TaskOp)

// openSessions counts the nodes with an assignments read open on this leader.
type openSessions struct {
	mu    sync.Mutex
	nodes map[string]int
}

func (o *openSessions) enter(nodeID string) (leave func()) {
	o.mu.Lock()
	if o.nodes == nil {
		o.nodes = map[string]int{}
	}
	o.nodes[nodeID]++
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		if o.nodes[nodeID]--; o.nodes[nodeID] <= 0 {
			delete(o.nodes, nodeID)
		}
		o.mu.Unlock()
	}
}

// Sessions is the number of nodes whose session waits on this dispatcher now.
func (d *Dispatcher) Sessions() int {
	d.open.mu.Lock()
	defer d.open.mu.Unlock()
	return len(d.open.nodes)
}
