package forward

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/swarmlet/swarmlet/raftstore"
)

// Leadership records whether this manager's current term of leadership is ready to
// serve: its barrier has been applied, so its state holds everything earlier
// leaders committed. The node's leader loop sets it; routing and sessions read it.
type Leadership struct {
	readyTerm atomic.Uint64
	ctx       atomic.Pointer[context.Context]
}

// Acquired marks term as ready; ctx ends when the leadership does.
func (l *Leadership) Acquired(term uint64, ctx context.Context) {
	l.readyTerm.Store(term)
	l.ctx.Store(&ctx)
}

// Lost clears the leadership context.
func (l *Leadership) Lost() { l.ctx.Store(nil) }

// Context is the current leadership's context, nil when not leading.
func (l *Leadership) Context() context.Context {
	if p := l.ctx.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready reports whether st leads in the term whose barrier completed here.
func (l *Leadership) Ready(st *raftstore.Store) bool {
	return st.IsLeader() && l.readyTerm.Load() == st.Term()
}

// WaitReady waits a bounded time for this leader's barrier of the current term.
func (l *Leadership) WaitReady(ctx context.Context, st *raftstore.Store) bool {
	deadline := time.Now().Add(3 * time.Second)
	for {
		if l.Ready(st) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
