package raftstore

import (
	"bytes"
	"slices"
	"testing"
)

func TestChangedSince(t *testing.T) {
	s := NewState()
	h := history()
	applyAll(t, s, h)
	// Entry i+1 applied h[i]; what entries 9 and 10 (the task ops) changed is
	// the task; the node certificate (15) changed n1 again; s1 was last changed
	// by entry 8.
	cases := []struct {
		since uint64
		want  []Changed // must all be named
		not   []Changed // must not be named
	}{
		{since: 8, want: []Changed{{ChangedTasks, "t1"}, {ChangedNodes, "n1"}}, not: []Changed{{ChangedServices, "s1"}}},
		{since: 10, want: []Changed{{ChangedCluster, "cluster"}, {ChangedServices, "s2"}, {ChangedNodes, "n2"}}, not: []Changed{{ChangedTasks, "t1"}}},
		{since: uint64(len(h)), not: []Changed{{ChangedTasks, "t1"}, {ChangedNodes, "n2"}}},
		{since: 0, want: []Changed{{ChangedNodes, "n1"}, {ChangedServices, "s1"}, {ChangedTasks, "t1"}}},
	}
	for _, tc := range cases {
		got, upto, ok := s.ChangedSince(tc.since)
		if !ok || upto != uint64(len(h)) {
			t.Fatalf("since %d: ok %v upto %d, want true %d", tc.since, ok, upto, len(h))
		}
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("since %d: %v not named in %v", tc.since, w, got)
			}
		}
		for _, n := range tc.not {
			if slices.Contains(got, n) {
				t.Errorf("since %d: %v named in %v", tc.since, n, got)
			}
		}
	}
}

func TestChangedSinceAfterRestoreAndBound(t *testing.T) {
	s := NewState()
	applyAll(t, s, history())
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	idx := r.Index()
	if _, _, ok := r.ChangedSince(idx - 1); ok {
		t.Fatal("a restored state claims to know what came before its snapshot")
	}
	if got, _, ok := r.ChangedSince(idx); !ok || len(got) != 0 {
		t.Fatalf("since the snapshot's own index: %v, %v; want nothing, true", got, ok)
	}
	// The feed is bounded: fill it past its size with entries that each change
	// one node, and the oldest entries are forgotten.
	var f feed
	for i := uint64(1); i <= feedMax; i++ {
		f.add(i, []Changed{{ChangedNodes, "n"}})
	}
	if f.size > feedMax || f.from == 0 {
		t.Fatalf("feed size %d from %d after %d entries: not bounded", f.size, f.from, feedMax)
	}
}
