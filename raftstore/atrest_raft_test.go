package raftstore

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/swarmlet/swarmlet/api"
)

type sealedNode struct {
	raft  *raft.Raft
	state *State
	bolt  *raftboltdb.BoltStore
	logs  *EncryptedLogStore
	snaps *EncryptedSnapshotStore
}

func (n *sealedNode) close(t *testing.T) {
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Error(err)
	}
	n.bolt.Close()
}

// openSealed starts raft the way Store would with encryption at rest: bolt and the
// file snapshot store, each behind its wrapper, and this package's FSM.
func openSealed(t *testing.T, dir, id string, key DataKey, trans raft.Transport, bootstrap bool) *sealedNode {
	t.Helper()
	bolt := openBolt(t, filepath.Join(dir, "raft.db"))
	logs, err := NewEncryptedLogStore(bolt, key)
	if err != nil {
		t.Fatal(err)
	}
	snaps := NewEncryptedSnapshotStore(newFileSnaps(t, dir), key)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold, rc.SnapshotInterval = 1<<30, time.Hour // snapshots only when the test asks
	rc.TrailingLogs = 1
	rc.Logger = hclog.NewNullLogger()
	if bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(rc, logs, bolt, snaps, trans, conf); err != nil {
			t.Fatal(err)
		}
	}
	st := NewState()
	r, err := raft.NewRaft(rc, &fsm{state: st}, logs, bolt, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	return &sealedNode{raft: r, state: st, bolt: bolt, logs: logs, snaps: snaps}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func apply(t *testing.T, r *raft.Raft, c Command) {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(b, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestSealedRaft runs real raft on the wrappers: a leader writes a secret, snapshots
// (several frames), compacts its log, and a new voter catches up by InstallSnapshot
// (which needs the plaintext Size from Open); neither data dir holds the secret in
// plaintext; a restart restores from the sealed snapshot and reads the sealed log.
func TestSealedRaft(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	key1, key2 := mustKey(t), mustKey(t) // each manager seals with its own key
	a1, t1 := raft.NewInmemTransport("n1")
	a2, t2 := raft.NewInmemTransport("n2")
	t1.Connect(a2, t2)
	t2.Connect(a1, t1)

	n1 := openSealed(t, dir1, "n1", key1, t1, true)
	waitFor(t, "n1 to lead", func() bool { return n1.raft.State() == raft.Leader })
	apply(t, n1.raft, &ClusterInit{ClusterID: "c1", Trust: ClusterTrust{CAKey: []byte(marker), UnlockKey: "m-" + marker},
		ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}})
	// Enough state for a snapshot of several 64 KiB frames.
	for i := range 200 {
		apply(t, n1.raft, &NodeUpsert{Node: api.Node{ID: fmt.Sprintf("node%03d", i), Role: api.RoleWorker,
			Labels: map[string]string{"blob": strings.Repeat(fmt.Sprintf("%03d", i), 300), "secret": marker}}})
	}
	if err := n1.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	// Entries after the snapshot stay in the log only.
	apply(t, n1.raft, &NodeUpsert{Node: api.Node{ID: "late", Role: api.RoleWorker, Labels: map[string]string{"secret": marker}}})
	list, err := n1.snaps.List()
	if err != nil || len(list) != 1 || list[0].Size < 2*snapFrame {
		t.Fatalf("snapshots: %v %+v; want one of several frames", err, list)
	}
	if first, _ := n1.logs.FirstIndex(); first < 100 {
		t.Fatalf("log not compacted (first index %d): n2 would not need the snapshot", first)
	}

	n2 := openSealed(t, dir2, "n2", key2, t2, false)
	if err := n1.raft.AddVoter("n2", a2, 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to catch up", func() bool { return n2.state.Snapshot().Node("late") != nil })
	if c := n2.state.Snapshot().Cluster(); c == nil || string(c.Trust.CAKey) != marker {
		t.Fatalf("n2 cluster record %+v", c)
	}
	if got := n2.raft.Stats()["last_snapshot_index"]; got == "0" {
		t.Fatal("n2 caught up without installing a snapshot")
	}
	want := n1.state.Snapshot().Digest()
	waitFor(t, "equal digests", func() bool { return n2.state.Snapshot().Digest() == want })
	n1.close(t)
	n2.close(t)

	for _, dir := range []string{dir1, dir2} {
		if hits := grepDir(t, dir, marker); len(hits) != 0 {
			t.Fatalf("plaintext secret found in %v", hits)
		}
	}

	// Restart n1 alone: its FSM comes back from the sealed snapshot, and the
	// entries after it read back from the sealed log.
	_, t1b := raft.NewInmemTransport("n1")
	n1 = openSealed(t, dir1, "n1", key1, t1b, false)
	defer n1.close(t)
	if c := n1.state.Snapshot().Cluster(); c == nil || string(c.Trust.CAKey) != marker {
		t.Fatalf("restored cluster record %+v", c)
	}
	if n1.state.Snapshot().Node("node199") == nil {
		t.Fatal("restored state lacks node199")
	}
	last, _ := n1.logs.LastIndex()
	// The last entries: the "late" node, then AddVoter's configuration change.
	var l raft.Log
	found := false
	for i := last; i > last-3 && i > 0; i-- {
		if err := n1.logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogCommand {
			c, err := Decode(l.Data)
			if err != nil {
				t.Fatal(err)
			}
			if u, ok := c.(*NodeUpsert); ok && u.Node.ID == "late" {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("the entry after the snapshot did not read back from the sealed log")
	}
}
