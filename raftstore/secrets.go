package raftstore

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// Secrets and configs live in a table of their own, as registry credentials do
// (registryauth.go): no read of services, tasks or events carries a value. A
// row holds every version still needed, the newest last: a service's spec (or
// its previous spec, for a rollback) and its live tasks name the version they
// use, and a node is handed exactly those (the dispatcher's session). Values
// are plain in the FSM; the Raft log and snapshots on disk are what encryption
// at rest seals. Reads return a secret's metadata only; SecretValue is the one
// way to its value.

const tableSecrets = "secrets"

// secretRow is one stored secret or config.
type secretRow struct {
	ID     string          `json:"id"`
	Key    string          `json:"key"` // kind/name: names are unique per kind
	Meta   *api.Secret     `json:"meta"`
	Values []secretVersion `json:"values"` // ascending; the last is Meta.Version
}

type secretVersion struct {
	Version uint64 `json:"version"`
	Data    []byte `json:"data"`
}

func secretKey(kind api.SecretKind, name string) string { return string(kind) + "/" + name }

func secretsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: tableSecrets, Indexes: map[string]*memdb.IndexSchema{
		"id":  {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		"key": {Name: "key", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
	}}
}

// SecretCreate stores a new secret or config at version 1; the name must be free.
type SecretCreate struct {
	ID     string            `json:"id"`
	Kind   api.SecretKind    `json:"kind"`
	Name   string            `json:"name"`
	Data   []byte            `json:"data"`
	Labels map[string]string `json:"labels,omitempty"`
	At     time.Time         `json:"at"`
}

// SecretUpdate gives a secret or config a new version and, in the same entry,
// moves every service whose spec uses it to that version: each gets a new spec
// version (the old spec kept for a rollback) and so rolls out under its update
// settings. The value it already has changes nothing.
type SecretUpdate struct {
	Kind api.SecretKind `json:"kind"`
	Name string         `json:"name"`
	Data []byte         `json:"data"`
	At   time.Time      `json:"at"`
}

// SecretRemove deletes a secret or config no service's spec uses.
type SecretRemove struct {
	Kind api.SecretKind `json:"kind"`
	Name string         `json:"name"`
	At   time.Time      `json:"at"`
}

func (SecretCreate) Type() MsgType { return MsgSecretCreate }
func (SecretUpdate) Type() MsgType { return MsgSecretUpdate }
func (SecretRemove) Type() MsgType { return MsgSecretRemove }

// SecretUpdated is what a SecretUpdate applied: the new version's metadata and
// the services moved to it.
type SecretUpdated struct {
	Secret   *api.Secret
	Services []*api.Service
}

func getSecret(txn *memdb.Txn, kind api.SecretKind, name string) *secretRow {
	if raw, _ := txn.First(tableSecrets, "key", secretKey(kind, name)); raw != nil {
		return raw.(*secretRow)
	}
	return nil
}

func checkKind(k api.SecretKind) error {
	if !k.Valid() {
		return fmt.Errorf("kind %q: use secret or config: %w", k, ErrInvalid)
	}
	return nil
}

func applySecretCreate(txn *memdb.Txn, index uint64, c *SecretCreate) (any, error) {
	if err := checkKind(c.Kind); err != nil {
		return nil, err
	}
	if err := api.ValidateID(c.ID); err != nil {
		return nil, fmt.Errorf("%s: %w", err, ErrInvalid)
	}
	for _, err := range []error{api.ValidateSecretName(c.Kind, c.Name), api.ValidateSecretData(c.Kind, c.Data), api.ValidateSecretLabels(c.Labels)} {
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if getSecret(txn, c.Kind, c.Name) != nil {
		return nil, fmt.Errorf("%s %q: %w", c.Kind, c.Name, ErrNameTaken)
	}
	if raw, _ := txn.First(tableSecrets, "id", c.ID); raw != nil {
		return nil, fmt.Errorf("%s ID %s: %w", c.Kind, c.ID, ErrNameTaken)
	}
	meta := &api.Secret{ID: c.ID, Kind: c.Kind, Name: c.Name, Labels: maps.Clone(c.Labels), Version: 1,
		CreatedAt: c.At, UpdatedAt: c.At, CreateIndex: index, ModifyIndex: index}
	row := &secretRow{ID: c.ID, Key: secretKey(c.Kind, c.Name), Meta: meta,
		Values: []secretVersion{{Version: 1, Data: c.Data}}}
	mustInsert(txn, tableSecrets, row)
	return row.public(), nil
}

func applySecretUpdate(txn *memdb.Txn, index uint64, c *SecretUpdate) (any, error) {
	if err := checkKind(c.Kind); err != nil {
		return nil, err
	}
	old := getSecret(txn, c.Kind, c.Name)
	if old == nil {
		return nil, fmt.Errorf("%s %q: %w", c.Kind, c.Name, ErrNotFound)
	}
	if err := api.ValidateSecretData(c.Kind, c.Data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if bytes.Equal(c.Data, old.value(old.Meta.Version)) {
		// The value it has: no new version, nothing to roll.
		return &SecretUpdated{Secret: old.public()}, nil
	}
	meta := *old.Meta
	meta.Version++
	meta.UpdatedAt, meta.ModifyIndex = c.At, index
	row := &secretRow{ID: old.ID, Key: old.Key, Meta: &meta,
		Values: append(slices.Clone(old.Values), secretVersion{Version: meta.Version, Data: c.Data})}

	res := &SecretUpdated{}
	for _, svc := range servicesByID(txn) {
		refs := refsOf(&svc.Spec, c.Kind)
		if !slices.ContainsFunc(refs, func(r api.SecretRef) bool { return r.ID == row.ID }) {
			continue
		}
		spec := svc.Spec.Clone()
		mine := refsOf(&spec, c.Kind) // shares spec's clone of the list
		for i := range mine {
			if mine[i].ID == row.ID {
				mine[i].Version = meta.Version
			}
		}
		next, err := svc.WithSpec(spec, c.At)
		if err != nil {
			return nil, err
		}
		next.ModifyIndex = index
		putService(txn, next)
		res.Services = append(res.Services, next)
	}
	row.Values = keepNeeded(txn, row)
	mustInsert(txn, tableSecrets, row)
	res.Secret = row.public()
	return res, nil
}

func applySecretRemove(txn *memdb.Txn, index uint64, c *SecretRemove) (any, error) {
	if err := checkKind(c.Kind); err != nil {
		return nil, err
	}
	old := getSecret(txn, c.Kind, c.Name)
	if old == nil {
		return nil, fmt.Errorf("%s %q: %w", c.Kind, c.Name, ErrNotFound)
	}
	if users := usersOf(txn, c.Kind, old.ID); len(users) > 0 {
		return nil, fmt.Errorf("%s %q is in use by service %s: remove it from them first (service update --%s-rm %s): %w",
			c.Kind, c.Name, strings.Join(users, ", "), c.Kind, c.Name, api.ErrConflict)
	}
	if err := txn.Delete(tableSecrets, old); err != nil {
		return nil, fmt.Errorf("delete %s: %w", c.Kind, err)
	}
	return old.public(), nil
}

func refsOf(spec *api.ServiceSpec, kind api.SecretKind) []api.SecretRef {
	if kind == api.KindConfig {
		return spec.Configs
	}
	return spec.Secrets
}

func servicesByID(txn *memdb.Txn) []*api.Service {
	var out []*api.Service
	it, _ := txn.Get(tableServices, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*serviceRow).S)
	}
	return out
}

// usersOf names, sorted, the services whose current spec uses the stored secret id.
func usersOf(txn *memdb.Txn, kind api.SecretKind, id string) []string {
	var out []string
	for _, svc := range servicesByID(txn) {
		if slices.ContainsFunc(refsOf(&svc.Spec, kind), func(r api.SecretRef) bool { return r.ID == id }) {
			out = append(out, svc.Spec.Name)
		}
	}
	sort.Strings(out)
	return out
}

// keepNeeded is row's versions less those nothing can ask for any more: the
// newest stays, and every version a service's spec or previous spec, or a task
// not yet ended, names.
func keepNeeded(txn *memdb.Txn, row *secretRow) []secretVersion {
	need := map[uint64]bool{row.Meta.Version: true}
	mark := func(spec *api.ServiceSpec) {
		for _, refs := range [][]api.SecretRef{spec.Secrets, spec.Configs} {
			for _, r := range refs {
				if r.ID == row.ID {
					need[r.Version] = true
				}
			}
		}
	}
	for _, svc := range servicesByID(txn) {
		mark(&svc.Spec)
		if svc.PreviousSpec != nil {
			mark(svc.PreviousSpec)
		}
	}
	it, _ := txn.Get(tableTasks, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if t := raw.(*api.Task); !t.Status.State.Terminal() {
			mark(&t.Spec)
		}
	}
	return slices.DeleteFunc(row.Values, func(v secretVersion) bool { return !need[v.Version] })
}

// resolveRefs binds each secret and config a spec names to the stored one: a
// reference that already names it by ID, at a version still stored, keeps that
// version (a rolled-back service stays on its old value); any other gets the
// newest. A name with nothing stored refuses the spec.
func resolveRefs(txn *memdb.Txn, spec *api.ServiceSpec) error {
	for _, kind := range []api.SecretKind{api.KindSecret, api.KindConfig} {
		refs := refsOf(spec, kind)
		for i := range refs {
			r := &refs[i]
			row := getSecret(txn, kind, r.Source)
			if row == nil {
				return fmt.Errorf("%s %q not found: create it first with 'swarmlet %s create %s FILE': %w", kind, r.Source, kind, r.Source, ErrNotFound)
			}
			if r.ID == row.ID && r.Version != 0 && row.value(r.Version) != nil {
				continue
			}
			r.ID, r.Version = row.ID, row.Meta.Version
		}
	}
	return nil
}

func (r *secretRow) value(version uint64) []byte {
	for _, v := range r.Values {
		if v.Version == version {
			return v.Data
		}
	}
	return nil
}

// public is the row as reads show it: a config with its current value, a
// secret without any.
func (r *secretRow) public() *api.Secret {
	m := *r.Meta
	m.Labels = maps.Clone(m.Labels)
	if m.Kind == api.KindConfig {
		m.Data = slices.Clone(r.value(m.Version))
	}
	return &m
}

// Secrets lists the stored secrets (or configs) by name, without secrets' values.
func (v *Snapshot) Secrets(kind api.SecretKind) []*api.Secret {
	var out []*api.Secret
	for _, r := range v.secretRows() {
		if r.Meta.Kind == kind {
			out = append(out, r.public())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Secret finds a secret (or config) by name or ID; nil if there is none.
func (v *Snapshot) Secret(kind api.SecretKind, nameOrID string) *api.Secret {
	if raw, _ := v.txn.First(tableSecrets, "key", secretKey(kind, nameOrID)); raw != nil {
		return raw.(*secretRow).public()
	}
	if raw, _ := v.txn.First(tableSecrets, "id", nameOrID); raw != nil && raw.(*secretRow).Meta.Kind == kind {
		return raw.(*secretRow).public()
	}
	return nil
}

// SecretValue is one version of a stored value; only the dispatcher asks, to
// hand it to a node that runs a task using it.
func (v *Snapshot) SecretValue(kind api.SecretKind, id string, version uint64) ([]byte, bool) {
	raw, _ := v.txn.First(tableSecrets, "id", id)
	if raw == nil || raw.(*secretRow).Meta.Kind != kind {
		return nil, false
	}
	d := raw.(*secretRow).value(version)
	return d, d != nil
}

func (v *Snapshot) secretRows() []*secretRow {
	var out []*secretRow
	it, _ := v.txn.Get(tableSecrets, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*secretRow))
	}
	return out
}
