package dispatcher

import (
	"fmt"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// request is what every task of one placement group asks of a node. Tasks of the same
// service and spec version carry the same spec, so the scheduler builds it once per
// group instead of once per task.
type request struct {
	serviceID   string
	constraints []api.Constraint
	unmet       []string          // refusal per constraint, built once rather than per node
	badSpec     string            // a constraint that does not parse: no node can satisfy it
	engineGaps  map[string]string // engine name -> what it cannot honour (enginefilter.go)
	staticKey   string            // requests with equal keys pass the static filters alike
	cpu, mem    int64
	ports       []hostPort
	// maxPerNode caps the service's tasks on one node (0: none); atMax is its
	// refusal, worded once.
	maxPerNode uint64
	atMax      string
	// spread are the keys of the spec's placement preferences, outermost first.
	spread []string
}

// hostPort is a published port bound on the node's own address (host publish mode),
// which two tasks on one node cannot share.
type hostPort struct {
	port  int
	proto string
}

func (p hostPort) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

func newRequest(t *api.Task) *request {
	r := &request{
		serviceID: t.ServiceID,
		cpu:       t.Spec.Reservations.NanoCPUs,
		mem:       t.Spec.Reservations.MemoryBytes,
		ports:     taskHostPorts(t),
	}
	if m := t.Spec.MaxReplicasPerNode; m > 0 && t.Spec.Mode != api.ModeGlobal && t.Spec.Mode != api.ModeGlobalJob {
		r.maxPerNode, r.atMax = m, fmt.Sprintf("max replicas per node %d reached", m)
	}
	for _, p := range t.Spec.PlacementPrefs {
		r.spread = append(r.spread, p.Spread)
	}
	for _, expr := range t.Spec.Constraints {
		c, err := api.ParseConstraint(expr)
		if err != nil {
			r.badSpec = expr
			continue
		}
		r.constraints = append(r.constraints, c)
		r.unmet = append(r.unmet, "unmet constraint "+c.String())
	}
	r.engineGaps = engineGaps(&t.Spec)
	r.staticKey = strings.Join(t.Spec.Constraints, "\x00") + engineKey(r.engineGaps)
	return r
}

func taskHostPorts(t *api.Task) []hostPort {
	var ps []hostPort
	for _, p := range t.Spec.Ports {
		// A host-mode port with no published number gets a dynamic host port, which
		// cannot conflict.
		if p.PublishMode == api.PublishHost && p.PublishedPort != 0 {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			ps = append(ps, hostPort{p.PublishedPort, proto})
		}
	}
	return ps
}

// nodeInfo is a node plus what is already committed to it, updated as the scheduler
// places tasks within one call.
type nodeInfo struct {
	node     *api.Node
	idx      int   // position in the sorted node list
	cpu, mem int64 // reserved by non-terminal tasks
	ports    map[hostPort]bool
	tasks    int // tasks meant to run here (desired running), for spread
}

func (n *nodeInfo) commit(r *request, desiredRunning bool) {
	n.cpu += r.cpu
	n.mem += r.mem
	for _, p := range r.ports {
		if n.ports == nil {
			n.ports = map[hostPort]bool{}
		}
		n.ports[p] = true
	}
	if desiredRunning {
		n.tasks++
	}
}

// A filter refuses a node for a request, or returns "". The refusal is worded to
// follow a count ("2 insufficient memory"), so refusals aggregate across nodes as
// Docker's "no suitable node" message does.
type filter interface {
	refuse(r *request, n *nodeInfo) string
}

// Static filters depend only on the node and the spec, so the scheduler runs them
// once per group; dynamic filters depend on what was placed so far and run per task.
var (
	staticFilters  = []filter{readyFilter{}, availabilityFilter{}, constraintFilter{}, engineFilter{}}
	dynamicFilters = []filter{resourceFilter{}, portFilter{}}
)

// readyFilter: only a node the leader believes alive can start a task.
type readyFilter struct{}

func (readyFilter) refuse(_ *request, n *nodeInfo) string {
	switch n.node.Status {
	case api.NodeReady:
		return ""
	case api.NodeDown:
		return "down"
	default:
		return "not ready"
	}
}

// availabilityFilter: pause keeps what a node runs but takes nothing new; drain
// moves everything off.
type availabilityFilter struct{}

func (availabilityFilter) refuse(_ *request, n *nodeInfo) string {
	switch n.node.Availability {
	case api.AvailabilityActive, "":
		return ""
	case api.AvailabilityPause:
		return "paused"
	case api.AvailabilityDrain:
		return "drained"
	default:
		return "unavailable"
	}
}

// constraintFilter matches the spec's node.* constraints.
type constraintFilter struct{}

func (constraintFilter) refuse(r *request, n *nodeInfo) string {
	if r.badSpec != "" {
		return "invalid constraint " + r.badSpec
	}
	for i, c := range r.constraints {
		if !constraintHolds(c, n.node) {
			return r.unmet[i]
		}
	}
	return ""
}

func constraintHolds(c api.Constraint, n *api.Node) bool { return c.Holds(n) }

// resourceFilter: reservations must fit in what the node offers minus what its
// non-terminal tasks reserve. A zero capacity means the node did not say, which we
// treat as unlimited rather than refusing every reservation.
type resourceFilter struct{}

func (resourceFilter) refuse(r *request, n *nodeInfo) string {
	res := n.node.Resources
	if r.cpu > 0 && res.NanoCPUs > 0 && n.cpu+r.cpu > res.NanoCPUs {
		return "insufficient CPU"
	}
	if r.mem > 0 && res.MemoryBytes > 0 && n.mem+r.mem > res.MemoryBytes {
		return "insufficient memory"
	}
	return ""
}

// portFilter: a host-mode published port binds on the node's address, once.
type portFilter struct{}

func (portFilter) refuse(r *request, n *nodeInfo) string {
	for _, p := range r.ports {
		if n.ports[p] {
			return "host port " + p.String() + " in use"
		}
	}
	return ""
}

func refuseBy(fs []filter, r *request, n *nodeInfo) string {
	for _, f := range fs {
		if why := f.refuse(r, n); why != "" {
			return why
		}
	}
	return ""
}
