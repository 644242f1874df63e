package dispatcher

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// What an engine cannot do decides where a task may go, as a constraint does: a
// spec with mounts or capabilities never lands on a process-engine node. The
// scheduler refuses such nodes, naming the gap ("engine process cannot honour
// --mount"); a global service leaves them out (engineHonours); the API refuses
// a spec that no node it may run on could honour (EngineRefusal); the engine
// itself refuses at start, for a node that changed engine meanwhile.

// engineGaps is the refusal, per engine that has one, of a spec: computed once
// per request, since every task of a group shares the spec.
func engineGaps(spec *api.ServiceSpec) map[string]string {
	var out map[string]string
	if gaps := spec.EngineGaps(api.EngineProcess); len(gaps) > 0 {
		out = map[string]string{api.EngineProcess: api.EngineGapError(api.EngineProcess, gaps)}
	}
	return out
}

// engineFilter refuses a node whose engine cannot carry out the spec.
type engineFilter struct{}

func (engineFilter) refuse(r *request, n *nodeInfo) string {
	return r.engineGaps[n.node.Engine]
}

// engineKey keeps requests that differ in engine gaps apart in the static
// filters' cache.
func engineKey(gaps map[string]string) string {
	if len(gaps) == 0 {
		return ""
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(gaps)) {
		b.WriteString("\x01" + k + "=" + gaps[k])
	}
	return b.String()
}

// engineHonours says whether node n's engine can run spec.
func engineHonours(spec *api.ServiceSpec, n *api.Node) bool {
	return len(spec.EngineGaps(n.Engine)) == 0
}

// EngineRefusal is why the API refuses spec: every node it may run on (its
// constraints hold) runs an engine that cannot honour it. With no such node
// at all it is nil: the tasks wait, pending with the reason, for one to join.
func EngineRefusal(spec *api.ServiceSpec, nodes []*api.Node) error {
	gaps := spec.EngineGaps(api.EngineProcess)
	if len(gaps) == 0 {
		return nil
	}
	var cs []api.Constraint
	for _, expr := range spec.Constraints {
		c, err := api.ParseConstraint(expr)
		if err != nil {
			return nil // Validate reports it
		}
		cs = append(cs, c)
	}
	var fit []string
	for _, n := range nodes {
		holds := true
		for _, c := range cs {
			holds = holds && constraintHolds(c, n)
		}
		if !holds {
			continue
		}
		if engineHonours(spec, n) {
			return nil
		}
		fit = append(fit, n.Hostname)
	}
	if len(fit) == 0 {
		return nil
	}
	slices.Sort(fit)
	return fmt.Errorf("%s, and every node this service may run on runs it (%s): drop those options or add a node running the docker engine",
		api.EngineGapError(api.EngineProcess, gaps), strings.Join(fit, ", "))
}
