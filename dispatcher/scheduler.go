package dispatcher

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// Placement puts one task on one node.
type Placement struct {
	TaskID string
	NodeID string
}

// Unplaced is a task no node can take now, with the reason shown to the user.
type Unplaced struct {
	TaskID string
	Reason string
}

// Schedule places pending tasks on nodes. It is a pure function of its inputs:
// nodes, every task (whose non-terminal placed members reserve resources and ports
// and count for spread), and the tasks to place (new or pending, desired running).
// A pending task whose NodeID is already set (a global task) may only go to that node.
//
// Tasks are placed one after another and each placement counts for the next, so a
// thousand replicas spread in one call. Among the nodes that pass every filter the
// scheduler picks the one with the fewest tasks of the same service, then the fewest
// tasks overall, then the lowest node ID, so the result does not depend on map order
// or on the order of pending.
func Schedule(nodes []*api.Node, tasks []*api.Task, pending []*api.Task) (placements []Placement, unplaced []Unplaced) {
	infos := make([]*nodeInfo, 0, len(nodes))
	byID := make(map[string]*nodeInfo, len(nodes))
	for _, n := range nodes {
		ni := &nodeInfo{node: n}
		infos = append(infos, ni)
		byID[n.ID] = ni
	}
	slices.SortFunc(infos, func(a, b *nodeInfo) int { return cmp.Compare(a.node.ID, b.node.ID) })
	for _, t := range tasks {
		if t.NodeID == "" || t.Status.State < api.TaskAssigned || t.Status.State.Terminal() {
			continue
		}
		if ni := byID[t.NodeID]; ni != nil {
			// A task asked to stop still holds its resources and ports until the
			// worker reports it stopped, but it no longer counts for spread.
			ni.commit(newRequest(t), t.DesiredState <= api.TaskRunning)
		}
	}

	pending = slices.Clone(pending)
	slices.SortFunc(pending, func(a, b *api.Task) int {
		return cmp.Or(
			cmp.Compare(a.ServiceID, b.ServiceID),
			cmp.Compare(a.SpecVersion, b.SpecVersion),
			cmp.Compare(a.NodeID, b.NodeID),
			cmp.Compare(a.Slot, b.Slot),
			cmp.Compare(a.ID, b.ID),
		)
	})
	for start := 0; start < len(pending); {
		end := start + 1
		for end < len(pending) && sameGroup(pending[start], pending[end]) {
			end++
		}
		p, u := scheduleGroup(infos, byID, pending[start:end])
		placements = append(placements, p...)
		unplaced = append(unplaced, u...)
		start = end
	}
	return placements, unplaced
}

// sameGroup: tasks of one service at one spec version ask the same of a node.
func sameGroup(a, b *api.Task) bool {
	return a.ServiceID == b.ServiceID && a.SpecVersion == b.SpecVersion && a.NodeID == b.NodeID
}

// scheduleGroup places tasks that share a request. Static filters run once per node;
// the remaining candidates sit in a heap ordered by spread. A node refused by a
// dynamic filter is dropped for the rest of the group: within one call resources and
// ports only fill up, so it would refuse the group's later tasks too.
func scheduleGroup(infos []*nodeInfo, byID map[string]*nodeInfo, group []*api.Task) ([]Placement, []Unplaced) {
	req := newRequest(group[0])
	refusals := map[string]int{}
	considered := infos
	var missing string
	if id := group[0].NodeID; id != "" {
		considered = nil
		if ni := byID[id]; ni != nil {
			considered = []*nodeInfo{ni}
		} else {
			missing = id
		}
	}
	h := &nodeHeap{service: req.serviceID}
	for _, ni := range considered {
		if why := refuseBy(staticFilters, req, ni); why != "" {
			refusals[why]++
			continue
		}
		h.nodes = append(h.nodes, ni)
	}
	heap.Init(h)

	var placements []Placement
	var unplaced []Unplaced
	reason := ""
	for _, t := range group {
		placed := false
		for h.Len() > 0 {
			ni := h.nodes[0]
			if why := refuseBy(dynamicFilters, req, ni); why != "" {
				refusals[why]++
				heap.Pop(h)
				continue
			}
			ni.commit(req, true)
			heap.Fix(h, 0)
			placements = append(placements, Placement{TaskID: t.ID, NodeID: ni.node.ID})
			placed = true
			break
		}
		if !placed {
			if reason == "" {
				reason = explain(len(considered), refusals, missing)
			}
			unplaced = append(unplaced, Unplaced{TaskID: t.ID, Reason: reason})
		}
	}
	return placements, unplaced
}

// explain aggregates refusals the way Docker does, most common first:
// "no suitable node (3 nodes: 2 insufficient memory, 1 drained)".
func explain(total int, refusals map[string]int, missing string) string {
	if missing != "" {
		return fmt.Sprintf("no suitable node (node %s is not in the cluster)", missing)
	}
	if total == 0 {
		return "no suitable node (no nodes in the cluster)"
	}
	whys := make([]string, 0, len(refusals))
	for why := range refusals {
		whys = append(whys, why)
	}
	slices.SortFunc(whys, func(a, b string) int {
		return cmp.Or(cmp.Compare(refusals[b], refusals[a]), cmp.Compare(a, b))
	})
	var b strings.Builder
	fmt.Fprintf(&b, "no suitable node (%d node", total)
	if total != 1 {
		b.WriteString("s")
	}
	b.WriteString(":")
	for i, why := range whys {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d %s", refusals[why], why)
	}
	b.WriteString(")")
	return b.String()
}

// nodeHeap orders candidate nodes by spread: fewest tasks of the service, then
// fewest tasks, then node ID.
type nodeHeap struct {
	service string
	nodes   []*nodeInfo
}

func (h *nodeHeap) Len() int { return len(h.nodes) }
func (h *nodeHeap) Less(i, j int) bool {
	a, b := h.nodes[i], h.nodes[j]
	if sa, sb := a.services[h.service], b.services[h.service]; sa != sb {
		return sa < sb
	}
	if a.tasks != b.tasks {
		return a.tasks < b.tasks
	}
	return a.node.ID < b.node.ID
}
func (h *nodeHeap) Swap(i, j int) { h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i] }
func (h *nodeHeap) Push(x any)    { h.nodes = append(h.nodes, x.(*nodeInfo)) }
func (h *nodeHeap) Pop() any {
	n := h.nodes[len(h.nodes)-1]
	h.nodes = h.nodes[:len(h.nodes)-1]
	return n
}
