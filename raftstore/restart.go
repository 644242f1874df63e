package raftstore

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// A node's restart mark (api/restart.go): set by NodeRestarting to the command's
// time plus the cluster's restart grace, cleared when the node is back: seen
// ready again (NodeStatus), or registering while ready (NodeUpsert with Refresh:
// it came back before the leader saw it go).

func applyNodeRestarting(txn *memdb.Txn, index uint64, c *NodeRestarting) (any, error) {
	old := getNode(txn, c.NodeID)
	if old == nil {
		return nil, fmt.Errorf("node %s: %w", c.NodeID, ErrNotFound)
	}
	grace := getCluster(txn).RestartGraceOrDefault()
	if grace <= 0 {
		return old, nil // the cluster keeps no restarting node's tasks
	}
	n := *old
	n.RestartingUntil, n.ModifyIndex = c.At.Add(grace), index
	mustInsert(txn, tableNodes, &n)
	return &n, nil
}

// restartMarkAfterUpsert keeps a node's restart mark across a refresh of its
// record, but for the node's own registration while it is ready: that is the
// node back from its restart.
func restartMarkAfterUpsert(old *api.Node, c *NodeUpsert) time.Time {
	if c.Refresh && old.Status == api.NodeReady {
		return time.Time{}
	}
	return old.RestartingUntil
}
