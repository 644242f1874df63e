package raftstore

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// BenchmarkStoreLogs compares raft-boltdb's StoreLogs raw and through
// EncryptedLogStore: batches of 64 entries of 256 bytes (a burst of small commands
// group-committed by raft), with bolt's fsync per batch as managers run it, and
// without it to show the sealing's CPU cost alone.
func BenchmarkStoreLogs(b *testing.B) {
	const batch, size = 64, 256
	for _, sync := range []bool{true, false} {
		for _, sealed := range []bool{false, true} {
			name := fmt.Sprintf("fsync=%v/%s", sync, map[bool]string{false: "raw", true: "sealed"}[sealed])
			b.Run(name, func(b *testing.B) {
				bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db"), NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				defer bolt.Close()
				var store raft.LogStore = bolt
				if sealed {
					if store, err = NewEncryptedLogStore(bolt, mustKey(b)); err != nil {
						b.Fatal(err)
					}
				}
				payload := make([]byte, size)
				_, _ = rand.Read(payload)
				logs := make([]*raft.Log, batch)
				next := uint64(1)
				b.SetBytes(batch * size)
				for b.Loop() {
					for i := range logs {
						logs[i] = &raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: payload}
						next++
					}
					if err := store.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkGetLog is the read side: one entry by index.
func BenchmarkGetLog(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "raw", true: "sealed"}[sealed], func(b *testing.B) {
			bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db"), NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer bolt.Close()
			var store raft.LogStore = bolt
			if sealed {
				if store, err = NewEncryptedLogStore(bolt, mustKey(b)); err != nil {
					b.Fatal(err)
				}
			}
			payload := make([]byte, 256)
			var logs []*raft.Log
			for i := 1; i <= 1024; i++ {
				logs = append(logs, &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: payload})
			}
			if err := store.StoreLogs(logs); err != nil {
				b.Fatal(err)
			}
			var l raft.Log
			i := uint64(0)
			for b.Loop() {
				if err := store.GetLog(i%1024+1, &l); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSnapshotSeal is the snapshot stream through the sealing sink and back.
func BenchmarkSnapshotSeal(b *testing.B) {
	data := snapshotPayload(4 << 20)
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "raw", true: "sealed"}[sealed], func(b *testing.B) {
			var store raft.SnapshotStore = raft.NewInmemSnapshotStore()
			if sealed {
				store = NewEncryptedSnapshotStore(store, mustKey(b))
			}
			b.SetBytes(int64(len(data)))
			i := uint64(1)
			for b.Loop() {
				id := writeSnapshot(b, store, i, data)
				if _, got, err := readSnapshot(store, id); err != nil || len(got) != len(data) {
					b.Fatalf("read %d: %v", len(got), err)
				}
				i++
			}
		})
	}
}
