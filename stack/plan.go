package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// A deploy is planned before anything is written: the plan is a pure function
// of the stack and what the cluster holds, so a dry run shows exactly what a
// deploy does, and a bad plan (a name taken by a service outside the stack, a
// mode that cannot change) refuses the whole deploy with nothing changed.

// Action is what a deploy does to one service or object.
type Action string

const (
	Create    Action = "create"
	Update    Action = "update"
	Remove    Action = "remove"
	Unchanged Action = "unchanged"
	// Kept: in the cluster, not in the files, and no --prune: left running.
	Kept Action = "kept"
)

// ServiceChange is the plan for one service.
type ServiceChange struct {
	Action  Action
	Name    string
	Spec    api.ServiceSpec // what create or update writes
	Current *api.Service    // what the cluster has (nil for create)
	Fields  []FieldChange   // update: what differs
	// Rolls says whether an update replaces tasks (under the update settings);
	// false when only replicas or the update settings change.
	Rolls bool
}

// FieldChange is one differing field as a dotted JSON path of the spec; Old or
// New is "" when the field is absent on that side.
type FieldChange struct {
	Path     string
	Old, New string
}

// ObjectState is what the cluster holds under a secret's or config's name.
type ObjectState struct {
	Exists bool
	Stack  string // its stack label ("" for an object made by hand)
}

// ObjectChange is the plan for one secret or config.
type ObjectChange struct {
	Kind   string // "secret" or "config"
	Action Action // create; update (a new version if the data differs); unchanged (external)
	Object Object
}

// Plan is a whole deploy.
type Plan struct {
	Stack    string
	Services []ServiceChange // sorted by name
	Objects  []ObjectChange  // secrets, then configs, by name
}

// PlanDeploy compares the stack with the cluster's services (all of them: a
// name held by a service of another stack is refused) and the state of the
// objects the stack uses (by "kind/name"). With prune, the stack's services
// no longer in the files are removed; without, they are kept.
func PlanDeploy(st *Stack, services []api.Service, objects map[string]ObjectState, prune bool) (*Plan, error) {
	p := &Plan{Stack: st.Name}
	byName := map[string]*api.Service{}
	for i := range services {
		byName[services[i].Spec.Name] = &services[i]
	}
	want := map[string]bool{}
	for _, spec := range st.Services {
		want[spec.Name] = true
		cur := byName[spec.Name]
		if cur == nil {
			p.Services = append(p.Services, ServiceChange{Action: Create, Name: spec.Name, Spec: spec})
			continue
		}
		if ns := cur.Spec.Labels[api.LabelStackNamespace]; ns != st.Name {
			return nil, fmt.Errorf("service %s exists and is not part of stack %s (%s): remove or rename it first", spec.Name, st.Name, owner(ns))
		}
		if cur.Spec.Mode != spec.Mode {
			return nil, fmt.Errorf("service %s: the mode cannot change from %s to %s: remove the service (swarmlet service rm %s) and deploy again", spec.Name, cur.Spec.Mode, spec.Mode, spec.Name)
		}
		c, err := compare(spec, cur)
		if err != nil {
			return nil, err
		}
		p.Services = append(p.Services, c)
	}
	for i := range services {
		s := &services[i]
		if s.Spec.Labels[api.LabelStackNamespace] != st.Name || want[s.Spec.Name] {
			continue
		}
		a := Kept
		if prune {
			a = Remove
		}
		p.Services = append(p.Services, ServiceChange{Action: a, Name: s.Spec.Name, Current: s})
	}
	sort.Slice(p.Services, func(i, j int) bool { return p.Services[i].Name < p.Services[j].Name })

	for _, k := range []struct {
		kind string
		objs []Object
	}{{"secret", st.Secrets}, {"config", st.Configs}} {
		for _, o := range k.objs {
			state := objects[k.kind+"/"+o.Name]
			c := ObjectChange{Kind: k.kind, Object: o}
			switch {
			case o.External && !state.Exists:
				return nil, fmt.Errorf("%s %s is external and does not exist: create it first (swarmlet %s create %s FILE)", k.kind, o.Name, k.kind, o.Name)
			case o.External:
				c.Action = Unchanged
			case !state.Exists:
				c.Action = Create
			case state.Stack != st.Name:
				return nil, fmt.Errorf("%s %s exists and is not part of stack %s (%s): name it external in the file, or remove it first", k.kind, o.Name, st.Name, owner(state.Stack))
			default:
				c.Action = Update
			}
			p.Objects = append(p.Objects, c)
		}
	}
	return p, nil
}

func owner(stack string) string {
	if stack == "" {
		return "made outside any stack"
	}
	return "it belongs to stack " + stack
}

// compare plans the update of cur to spec. The cluster's copy carries what
// the manager added (the force counter, and what flatten leaves out): those
// are not the file's, so they are not compared, and the update keeps the
// counter (the manager keeps its pins when the image is the same).
func compare(spec api.ServiceSpec, cur *api.Service) (ServiceChange, error) {
	spec.ForceUpdate = cur.Spec.ForceUpdate
	have := cur.Spec
	have.Normalize()
	fields, err := diff(have, spec)
	if err != nil {
		return ServiceChange{}, fmt.Errorf("service %s: %w", spec.Name, err)
	}
	c := ServiceChange{Action: Unchanged, Name: spec.Name, Spec: spec, Current: cur}
	if len(fields) > 0 {
		c.Action, c.Fields = Update, fields
		for _, f := range fields {
			c.Rolls = c.Rolls || rolls(f.Path)
		}
	}
	return c, nil
}

// rolls says whether a change of the field at path replaces tasks: all but
// those api.SameTaskSpec leaves out (the replica count, the update settings).
func rolls(path string) bool {
	return path != "replicas" && !strings.HasPrefix(path, "update_config") && !strings.HasPrefix(path, "rollback_config")
}

// diff lists the fields of two specs that differ, by their JSON form: what the
// API stores is what is compared, so nil and empty lists are one (omitempty).
func diff(a, b api.ServiceSpec) ([]FieldChange, error) {
	fa, err := flatten(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatten(b)
	if err != nil {
		return nil, err
	}
	var out []FieldChange
	keys := slices.Sorted(maps.Keys(fa))
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fa[k] != fb[k] {
			out = append(out, FieldChange{Path: k, Old: fa[k], New: fb[k]})
		}
	}
	return out, nil
}

// durations are the spec's fields that hold a time.Duration: the plan shows
// them as 10s, not 10000000000.
var durations = map[string]bool{
	"stop_grace_period": true, "restart_policy.delay": true, "restart_policy.window": true,
	"update_config.delay": true, "update_config.monitor": true, "rollback_config.delay": true, "rollback_config.monitor": true,
	"health.interval": true, "health.timeout": true, "health.start_period": true,
}

// flatten is a spec as dotted paths to JSON values; objects are opened,
// lists and scalars are leaves.
func flatten(s api.ServiceSpec) (map[string]string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	managers(v)
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && (prefix == "" || len(m) > 0) {
			for k, e := range m {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, e)
			}
			return
		}
		if n, ok := v.(json.Number); ok && durations[prefix] {
			if ns, err := n.Int64(); err == nil {
				v = time.Duration(ns).String()
			}
		}
		j, _ := json.Marshal(v)
		out[prefix] = string(j)
	}
	walk("", v)
	return out, nil
}

// managers drops from a spec's JSON what the manager sets where it stores a
// spec: the image's pins (api/images.go) and, in each secret and config
// reference, the stored object's ID and version (api/extras.go). By their
// JSON names, so that the comparison needs no change when such a field is
// added; a file never sets them.
func managers(v any) {
	m, _ := v.(map[string]any)
	delete(m, "image_digest")
	delete(m, "image_id")
	for _, list := range []string{"secrets", "configs"} {
		refs, _ := m[list].([]any)
		for _, r := range refs {
			if r, ok := r.(map[string]any); ok {
				delete(r, "id")
				delete(r, "version")
			}
		}
	}
}

// Counts sums the plan's service actions.
func (p *Plan) Counts() map[Action]int {
	n := map[Action]int{}
	for _, c := range p.Services {
		n[c.Action]++
	}
	return n
}
