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

// openSessions counts the nodes with an assignments read open on this leader,
// and when each last had one.
type openSessions struct {
	mu    sync.Mutex
	nodes map[string]int
	last  map[string]time.Time
}

func (o *openSessions) enter(nodeID string) (leave func()) {
	o.mu.Lock()
	if o.nodes == nil {
		o.nodes, o.last = map[string]int{}, map[string]time.Time{}
	}
	o.nodes[nodeID]++
	o.last[nodeID] = time.Now()
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		if o.nodes[nodeID]--; o.nodes[nodeID] <= 0 {
			delete(o.nodes, nodeID)
		}
		o.last[nodeID] = time.Now()
		o.mu.Unlock()
	}
}

// touch records that nodeID was heard from (a status report).
func (o *openSessions) touch(nodeID string) {
	o.mu.Lock()
	if o.last == nil {
		o.nodes, o.last = map[string]int{}, map[string]time.Time{}
	}
	o.last[nodeID] = time.Now()
	o.mu.Unlock()
}

// SessionSeen says whether nodeID has a session open on this leader now, or had
// was heard from within the last d (recent), and whether it ever was (ever).
func (d *Dispatcher) SessionSeen(nodeID string, within time.Duration) (recent, ever bool) {
	d.open.mu.Lock()
	defer d.open.mu.Unlock()
	if d.open.nodes[nodeID] > 0 {
		return true, true
	}
	t, ok := d.open.last[nodeID]
	return ok && time.Since(t) < within, ok
}

// LastHeard is when nodeID was last heard from by this leader (zero: never).
func (d *Dispatcher) LastHeard(nodeID string) time.Time {
	d.open.mu.Lock()
	defer d.open.mu.Unlock()
	return d.open.last[nodeID]
}

// Started is when this dispatcher (this leadership's) was made.
func (d *Dispatcher) Started() time.Time { return d.started }

// Sessions is the number of nodes whose session waits on this dispatcher now.
func (d *Dispatcher) Sessions() int {
	d.open.mu.Lock()
	defer d.open.mu.Unlock()
	return len(d.open.nodes)
}
