package dispatcher

import (
	"slices"

	"github.com/swarmlet/swarmlet/api"
)

// What a node's session tells it about images: the registry credentials of the
// services it runs live tasks of (and of no other service), and, for each pinned
// image ID its tasks need, which other nodes hold it. A node holds an image when a
// live task of its reported it (the task status's image ID, set from preparing on),
// so a node that just loaded an image becomes a source for the rest at once.

// registryAuths is the part of a snapshot that knows the stored credentials
// (raftstore's); a snapshot without it hands out none.
type registryAuths interface {
	RegistryAuth(serviceID string) string
}

// imageInfo fills the image part of a node's assignments from its own tasks.
func imageInfo(snap Snapshot, nodeID string, mine []*api.Task, out *api.Assignments) {
	live := func(t *api.Task) bool { return !t.Status.State.Terminal() && t.DesiredState <= api.TaskRunning }
	need := map[string]bool{}
	ra, _ := snap.(registryAuths)
	for _, t := range mine {
		if !live(t) {
			continue
		}
		if t.Spec.ImageID != "" && t.Status.ImageID != t.Spec.ImageID {
			need[t.Spec.ImageID] = true
		}
		if ra == nil {
			continue
		}
		if a := ra.RegistryAuth(t.ServiceID); a != "" {
			if out.RegistryAuth == nil {
				out.RegistryAuth = map[string]string{}
			}
			out.RegistryAuth[t.ServiceID] = a
		}
	}
	if len(need) == 0 {
		return
	}
	for _, t := range snap.Tasks() {
		if t.NodeID == nodeID || t.NodeID == "" || !need[t.Status.ImageID] || !live(t) || t.Status.State < api.TaskPreparing {
			continue
		}
		if n := snap.Node(t.NodeID); n == nil || n.Status != api.NodeReady {
			continue
		}
		if out.ImageSources == nil {
			out.ImageSources = map[string][]string{}
		}
		if s := out.ImageSources[t.Status.ImageID]; !slices.Contains(s, t.NodeID) {
			out.ImageSources[t.Status.ImageID] = append(s, t.NodeID)
		}
	}
	for _, s := range out.ImageSources {
		slices.Sort(s)
	}
}
