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
// A task pinned to a node (its NodeID already set, or a node.id==X constraint, which
// is how global tasks are made) is only considered for that node.
//
// Tasks are placed one after another and each placement counts for the next, so a
// thousand replicas spread in one call. Among the nodes that pass every filter the
// scheduler picks the one with the fewest tasks of the same service, then the fewest
// tasks overall, then the lowest node ID, so the result does not depend on map order
// or on the order of pending.
func Schedule(nodes []*api.Node, tasks []*api.Task, pending []*api.Task) (placements []Placement, unplaced []Unplaced) {
	c := &cluster{
		byID:       make(map[string]*nodeInfo, len(nodes)),
		perService: map[string]map[int]int{},
		static:     map[string]*staticResult{},
	}
	for _, n := range nodes {
		ni := &nodeInfo{node: n}
		c.infos = append(c.infos, ni)
		c.byID[n.ID] = ni
	}
	slices.SortFunc(c.infos, func(a, b *nodeInfo) int { return cmp.Compare(a.node.ID, b.node.ID) })
	for i, ni := range c.infos {
		ni.idx = i
	}
	c.names = displayNames(c.infos)
	for _, t := range tasks {
		if t.NodeID == "" || t.Status.State < api.TaskAssigned || t.Status.State.Terminal() {
			continue
		}
		if ni := c.byID[t.NodeID]; ni != nil {
			// A task asked to stop still holds its resources and ports until the
			// worker reports it stopped, but it no longer counts for spread.
			c.commit(ni, newRequest(t), t.DesiredState <= api.TaskRunning)
		}
	}

	queue := make([]pinned, len(pending))
	for i, t := range pending {
		queue[i] = pinned{t, pinnedNode(t)}
	}
	slices.SortFunc(queue, func(a, b pinned) int {
		return cmp.Or(
			cmp.Compare(a.ServiceID, b.ServiceID),
			cmp.Compare(a.SpecVersion, b.SpecVersion),
			cmp.Compare(a.pin, b.pin),
			cmp.Compare(a.Slot, b.Slot),
			cmp.Compare(a.ID, b.ID),
		)
	})
	for start := 0; start < len(queue); {
		end := start + 1
		for end < len(queue) && sameGroup(queue[start], queue[end]) {
			end++
		}
		p, u := c.scheduleGroup(queue[start:end])
		placements = append(placements, p...)
		unplaced = append(unplaced, u...)
		start = end
	}
	return placements, unplaced
}

// cluster is the scheduler's working state for one call.
type cluster struct {
	infos []*nodeInfo // sorted by node ID
	byID  map[string]*nodeInfo
	// perService counts, per service, its tasks meant to run on each node (by index).
	// Kept apart from the nodes because a group needs only its own service's counts.
	perService map[string]map[int]int
	static     map[string]*staticResult // by request.staticKey
	buf        []candidate
	names      []string // how a refusal names each node (by index)
}

// refusals lists, per reason, the nodes (by index) refused for it.
type refusals map[string][]int

func (r refusals) add(why string, idx int) { r[why] = append(r[why], idx) }

// clone copies r so that adding to the copy never writes into r's lists.
func (r refusals) clone() refusals {
	c := make(refusals, len(r))
	for why, idx := range r {
		c[why] = slices.Clip(idx)
	}
	return c
}

// displayNames names nodes in refusals by host name, or by ID where several
// nodes share one (nodes on one machine may).
func displayNames(infos []*nodeInfo) []string {
	seen := map[string]int{}
	for _, ni := range infos {
		seen[ni.node.Hostname]++
	}
	names := make([]string, len(infos))
	for i, ni := range infos {
		names[i] = ni.node.Hostname
		if names[i] == "" || seen[names[i]] > 1 {
			names[i] = ni.node.ID
		}
	}
	return names
}

func (c *cluster) commit(ni *nodeInfo, r *request, desiredRunning bool) {
	ni.commit(r, desiredRunning)
	if desiredRunning {
		m := c.perService[r.serviceID]
		if m == nil {
			m = map[int]int{}
			c.perService[r.serviceID] = m
		}
		m[ni.idx]++
	}
}

// pinned is a task to place and the one node it may go to, if any.
type pinned struct {
	*api.Task
	pin string
}

// pinnedNode returns the node a task is bound to: its NodeID if already set, else the
// value of a node.id==X constraint, else "".
func pinnedNode(t *api.Task) string {
	if t.NodeID != "" {
		return t.NodeID
	}
	for _, expr := range t.Spec.Constraints {
		if c, err := api.ParseConstraint(expr); err == nil && c.Equal && c.Key == "node.id" {
			return c.Value
		}
	}
	return ""
}

// sameGroup: tasks of one service at one spec version ask the same of a node.
func sameGroup(a, b pinned) bool {
	return a.ServiceID == b.ServiceID && a.SpecVersion == b.SpecVersion && a.pin == b.pin
}

// staticResult is the outcome of the static filters over all nodes for one set of
// constraints, shared by every group with that set.
type staticResult struct {
	eligible []*nodeInfo
	refusals refusals
}

func runStatic(nodes []*nodeInfo, req *request) *staticResult {
	res := &staticResult{refusals: refusals{}}
	for _, ni := range nodes {
		if why := refuseBy(staticFilters, req, ni); why != "" {
			res.refusals.add(why, ni.idx)
			continue
		}
		res.eligible = append(res.eligible, ni)
	}
	return res
}

// scheduleGroup places tasks that share a request. Static filters run once per node
// and set of constraints; the remaining candidates sit in a heap ordered by spread.
// A node refused by a dynamic filter is dropped for the rest of the group: within
// one call resources and ports only fill up, so it would refuse the group's later
// tasks too.
func (c *cluster) scheduleGroup(group []pinned) ([]Placement, []Unplaced) {
	req := newRequest(group[0].Task)
	var st *staticResult
	considered := len(c.infos)
	var missing string
	if id := group[0].pin; id != "" {
		considered = 1
		if ni := c.byID[id]; ni != nil {
			st = runStatic([]*nodeInfo{ni}, req)
		} else {
			missing, st = id, &staticResult{}
		}
	} else if st = c.static[req.staticKey]; st == nil {
		st = runStatic(c.infos, req)
		c.static[req.staticKey] = st
	}
	refusals := st.refusals.clone()
	var pick func() *nodeInfo
	switch {
	case len(req.spread) > 0:
		pick = c.spreadPicker(req, st.eligible, refusals)
	case len(group) <= linearMax:
		pick = c.linearPicker(req, st.eligible, refusals)
	default:
		pick = c.heapPicker(req, st.eligible, refusals)
	}

	var placements []Placement
	var unplaced []Unplaced
	reason := ""
	for _, t := range group {
		if ni := pick(); ni != nil {
			placements = append(placements, Placement{TaskID: t.ID, NodeID: ni.node.ID})
			continue
		}
		if reason == "" {
			reason = explain(considered, refusals, missing, c.names)
		}
		unplaced = append(unplaced, Unplaced{TaskID: t.ID, Reason: reason})
	}
	return placements, unplaced
}

// linearMax is the largest group placed by scanning the candidates for each task;
// bigger groups pay for a heap once and then place each task in log time.
var linearMax = 4

// A picker commits the group's next task to the best node that takes it and returns
// that node, or nil when none does; refusals then counts every candidate's reason.

func (c *cluster) heapPicker(req *request, eligible []*nodeInfo, refusals refusals) func() *nodeInfo {
	counts := c.perService[req.serviceID]
	h := &nodeHeap{infos: c.infos, c: c.buf[:0]}
	for _, ni := range eligible {
		h.c = append(h.c, candidate{ni.idx, counts[ni.idx]})
	}
	c.buf = h.c // reused by the next group
	heap.Init(h)
	return func() *nodeInfo {
		for h.Len() > 0 {
			top := &h.c[0]
			ni := c.infos[top.idx]
			if why := c.refuseDynamic(req, ni); why != "" {
				refusals.add(why, ni.idx)
				heap.Pop(h)
				continue
			}
			c.commit(ni, req, true)
			top.svc++
			heap.Fix(h, 0)
			return ni
		}
		return nil
	}
}

func (c *cluster) linearPicker(req *request, eligible []*nodeInfo, refusals refusals) func() *nodeInfo {
	var dropped map[int]bool
	return func() *nodeInfo {
		counts := c.perService[req.serviceID]
		var best *nodeInfo
		bestSvc := 0
		for _, ni := range eligible {
			if dropped[ni.idx] {
				continue
			}
			svc := counts[ni.idx]
			if best != nil && (svc > bestSvc || svc == bestSvc && (ni.tasks > best.tasks || ni.tasks == best.tasks && ni.idx > best.idx)) {
				continue
			}
			if why := c.refuseDynamic(req, ni); why != "" {
				refusals.add(why, ni.idx)
				if dropped == nil {
					dropped = map[int]bool{}
				}
				dropped[ni.idx] = true
				continue
			}
			best, bestSvc = ni, svc
		}
		if best != nil {
			c.commit(best, req, true)
		}
		return best
	}
}

// refuseDynamic runs the filters whose answer changes as tasks are placed: the
// service's cap per node, then resources and ports. Within one call each only
// turns from yes to no, so a node it refuses is dropped for the group's rest.
func (c *cluster) refuseDynamic(req *request, ni *nodeInfo) string {
	if req.maxPerNode > 0 && uint64(c.perService[req.serviceID][ni.idx]) >= req.maxPerNode {
		return req.atMax
	}
	return refuseBy(dynamicFilters, req, ni)
}

// namesPerReason is how many nodes a refusal names before it says how many more.
const namesPerReason = 3

// explain aggregates refusals as Docker does, most common first, and names the
// nodes each refusal is about (the first few, then how many more), so a user
// sees which node to fix:
// "no suitable node (3 nodes: 2 insufficient memory on n1, n2; 1 drained on n3)".
func explain(total int, refusals refusals, missing string, names []string) string {
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
		return cmp.Or(cmp.Compare(len(refusals[b]), len(refusals[a])), cmp.Compare(a, b))
	})
	var b strings.Builder
	fmt.Fprintf(&b, "no suitable node (%d node", total)
	if total != 1 {
		b.WriteString("s")
	}
	b.WriteString(":")
	for i, why := range whys {
		if i > 0 {
			b.WriteString(";")
		}
		idx := refusals[why]
		on := make([]string, len(idx))
		for j, x := range idx {
			on[j] = names[x]
		}
		slices.Sort(on)
		fmt.Fprintf(&b, " %d %s on %s", len(idx), why, strings.Join(on[:min(len(on), namesPerReason)], ", "))
		if len(on) > namesPerReason {
			fmt.Fprintf(&b, " and %d more", len(on)-namesPerReason)
		}
	}
	b.WriteString(")")
	return b.String()
}

// candidate is a node that passed the static filters, with the count of the group's
// service on it copied in so that comparisons need no map lookup. It holds no
// pointer, which keeps heap swaps free of GC write barriers.
type candidate struct {
	idx int // into cluster.infos
	svc int
}

// nodeHeap orders candidates by spread: fewest tasks of the service, then fewest
// tasks, then node ID.
type nodeHeap struct {
	infos []*nodeInfo
	c     []candidate
}

func (h *nodeHeap) Len() int { return len(h.c) }
func (h *nodeHeap) Less(i, j int) bool {
	a, b := &h.c[i], &h.c[j]
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if ta, tb := h.infos[a.idx].tasks, h.infos[b.idx].tasks; ta != tb {
		return ta < tb
	}
	return a.idx < b.idx // the same order as node IDs
}
func (h *nodeHeap) Swap(i, j int) { h.c[i], h.c[j] = h.c[j], h.c[i] }
func (h *nodeHeap) Push(x any)    { h.c = append(h.c, x.(candidate)) }
func (h *nodeHeap) Pop() any {
	n := h.c[len(h.c)-1]
	h.c = h.c[:len(h.c)-1]
	return n
}
