package raftstore

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// fsm adapts State to raft.FSM (and raft.BatchingFSM, so a burst of entries
// committed together is applied in one call).
type fsm struct {
	state *State
	hooks Hooks // observe only
}

// applyResult travels back to the proposer through the Raft future.
type applyResult struct {
	Value any
	Err   error
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := Decode(l.Data)
	if err != nil {
		// A committed entry we cannot read means the log and the binary disagree;
		// continuing would fork this manager's state from the others'.
		panic(fmt.Sprintf("raftstore: entry %d: %v", l.Index, err))
	}
	start := time.Now()
	v, err := f.state.Apply(l.Index, c)
	if f.hooks.Apply != nil {
		f.hooks.Apply(c.Type(), time.Since(start))
	}
	if f.hooks.Entry != nil {
		f.hooks.Entry(c.Type(), len(l.Data))
	}
	return applyResult{Value: v, Err: err}
}

func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.state.Snapshot(), done: f.hooks.Snapshot}, nil
}

func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	return f.state.Restore(r)
}

type fsmSnapshot struct {
	snap *Snapshot
	done func(bytes int64, d time.Duration)
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	n, err := s.snap.WriteTo(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.done != nil {
		s.done(n, time.Since(start))
	}
	return nil
}

func (s *fsmSnapshot) Release() {}
