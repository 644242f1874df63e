package main

import (
	"context"
	"errors"

	"github.com/swarmlet/swarmlet/node/client"
)

// objectStore is what a stack needs of the cluster's secrets and configs (kind
// "secret" or "config"). Update must make a new version only when data
// differs from what is stored, and say whether it did: a redeploy of an
// unchanged file then changes nothing, and a changed file rolls the services
// that use the object under their update settings.
type objectStore interface {
	// Lookup says whether name exists and, if so, its labels.
	Lookup(ctx context.Context, kind, name string) (found bool, labels map[string]string, err error)
	Create(ctx context.Context, kind, name string, data []byte, labels map[string]string) error
	Update(ctx context.Context, kind, name string, data []byte) (changed bool, err error)
	// List names the objects of a kind carrying label (KEY=VALUE).
	List(ctx context.Context, kind, label string) ([]string, error)
	Remove(ctx context.Context, kind, name string) error
}

// errNoObjectStore: this build's API has no secrets or configs yet (issue 12's
// secrets work brings them); a stack that uses one is refused with this.
var errNoObjectStore = errors.New("secrets and configs are not available in this build of swarmlet: remove them from the compose file, or use a build with `swarmlet secret`")

// stackObjects is the object store of the cluster cl talks to.
//
// MERGE: wire the secrets and configs API here (client calls of `swarmlet
// secret|config`), and remove noObjects.
func stackObjects(cl *client.Client) objectStore { return noObjects{} }

// noObjects is a cluster with no secrets or configs: none exists, none can be
// made.
type noObjects struct{}

func (noObjects) Lookup(context.Context, string, string) (bool, map[string]string, error) {
	return false, nil, nil
}
func (noObjects) Create(context.Context, string, string, []byte, map[string]string) error {
	return errNoObjectStore
}
func (noObjects) Update(context.Context, string, string, []byte) (bool, error) {
	return false, errNoObjectStore
}
func (noObjects) List(context.Context, string, string) ([]string, error) { return nil, nil }
func (noObjects) Remove(context.Context, string, string) error           { return errNoObjectStore }
