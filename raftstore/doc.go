// Package raftstore replicates cluster state through hashicorp/raft: typed commands, an FSM over an indexed in-memory store, snapshots and watches.
package raftstore
