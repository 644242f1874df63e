package raftstore

import (
	"github.com/hashicorp/go-memdb"
)

// Registry credentials of services (--with-registry-auth) live in a table of their
// own, not in api.Service: no read of services or tasks, no watch, no event can
// carry them by accident. Only the dispatcher reads them, to hand a node the
// credentials of the services it runs tasks of. They are plain in the FSM like
// everything else; the Raft log and snapshots on disk are what encryption at
// rest seals.

const tableRegistryAuth = "registry_auth"

// registryAuthRow is one service's credentials (docker's X-Registry-Auth form).
type registryAuthRow struct {
	ID   string `json:"service_id"` // the service's ID
	Auth string `json:"auth"`
}

func registryAuthTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: tableRegistryAuth, Indexes: map[string]*memdb.IndexSchema{
		"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
	}}
}

// putRegistryAuth sets a service's credentials; "" leaves them as they are (an
// update without --with-registry-auth keeps what create sent, as docker does).
func putRegistryAuth(txn *memdb.Txn, serviceID, auth string) {
	if auth == "" {
		return
	}
	mustInsert(txn, tableRegistryAuth, &registryAuthRow{ID: serviceID, Auth: auth})
}

func deleteRegistryAuth(txn *memdb.Txn, serviceID string) {
	_, _ = txn.DeleteAll(tableRegistryAuth, "id", serviceID)
}

// RegistryAuth is the credentials stored for a service ("" if none).
func (v *Snapshot) RegistryAuth(serviceID string) string {
	raw, _ := v.txn.First(tableRegistryAuth, "id", serviceID)
	if raw == nil {
		return ""
	}
	return raw.(*registryAuthRow).Auth
}

func (v *Snapshot) registryAuths() []*registryAuthRow {
	var out []*registryAuthRow
	it, _ := v.txn.Get(tableRegistryAuth, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*registryAuthRow))
	}
	return out
}
