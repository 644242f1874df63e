package main

import (
	"context"
	"errors"
	"strings"

	"github.com/swarmlet/swarmlet/api"
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

// stackObjects is the object store of the cluster cl talks to: the API of
// `swarmlet secret|config`.
func stackObjects(cl *client.Client) objectStore { return clusterObjects{cl} }

type clusterObjects struct{ cl *client.Client }

func (o clusterObjects) Lookup(ctx context.Context, kind, name string) (bool, map[string]string, error) {
	s, err := o.cl.Secret(ctx, api.SecretKind(kind), name)
	if errors.Is(err, api.ErrNotFound) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	return true, s.Labels, nil
}

func (o clusterObjects) Create(ctx context.Context, kind, name string, data []byte, labels map[string]string) error {
	_, err := o.cl.CreateSecret(ctx, api.SecretKind(kind), api.SecretCreateRequest{Name: name, Data: data, Labels: labels})
	return err
}

// Update relies on the manager making no new version for the same data.
func (o clusterObjects) Update(ctx context.Context, kind, name string, data []byte) (bool, error) {
	before, err := o.cl.Secret(ctx, api.SecretKind(kind), name)
	if err != nil {
		return false, err
	}
	ans, err := o.cl.UpdateSecret(ctx, api.SecretKind(kind), name, data)
	if err != nil {
		return false, err
	}
	return ans.Version != before.Version, nil
}

func (o clusterObjects) List(ctx context.Context, kind, label string) ([]string, error) {
	all, err := o.cl.Secrets(ctx, api.SecretKind(kind))
	if err != nil {
		return nil, err
	}
	k, v, _ := strings.Cut(label, "=")
	var names []string
	for _, s := range all {
		if have, ok := s.Labels[k]; ok && have == v {
			names = append(names, s.Name)
		}
	}
	return names, nil
}

func (o clusterObjects) Remove(ctx context.Context, kind, name string) error {
	return o.cl.RemoveSecret(ctx, api.SecretKind(kind), name)
}
