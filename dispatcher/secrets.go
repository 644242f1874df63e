package dispatcher

import (
	"sort"

	"github.com/swarmlet/swarmlet/api"
)

// What a node's session hands it of stored secrets and configs: the values, at
// the versions its live tasks name, of those tasks' references, and nothing
// else. A task that ends or leaves the node takes its values out of the next
// answer, which is how the node learns to drop them.

// secretValues is the part of a snapshot that holds the values (raftstore's);
// a snapshot without it hands out none.
type secretValues interface {
	SecretValue(kind api.SecretKind, id string, version uint64) ([]byte, bool)
}

// fileValues fills the secrets and configs of a node's assignments from its tasks.
func fileValues(snap Snapshot, mine []*api.Task, out *api.Assignments) {
	sv, ok := snap.(secretValues)
	if !ok {
		return
	}
	type key struct {
		id      string
		version uint64
	}
	seen := map[api.SecretKind]map[key]bool{api.KindSecret: {}, api.KindConfig: {}}
	for _, t := range mine {
		if t.Status.State.Terminal() || t.DesiredState > api.TaskRunning {
			continue
		}
		for _, l := range []struct {
			kind api.SecretKind
			refs []api.SecretRef
			dst  *[]api.SecretValue
		}{{api.KindSecret, t.Spec.Secrets, &out.Secrets}, {api.KindConfig, t.Spec.Configs, &out.Configs}} {
			for _, r := range l.refs {
				k := key{r.ID, r.Version}
				if seen[l.kind][k] {
					continue
				}
				seen[l.kind][k] = true
				if d, ok := sv.SecretValue(l.kind, r.ID, r.Version); ok {
					*l.dst = append(*l.dst, api.SecretValue{ID: r.ID, Version: r.Version, Data: d})
				}
			}
		}
	}
	for _, l := range [][]api.SecretValue{out.Secrets, out.Configs} {
		sort.Slice(l, func(i, j int) bool {
			if l[i].ID != l[j].ID {
				return l[i].ID < l[j].ID
			}
			return l[i].Version < l[j].Version
		})
	}
}
