package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/raftstore"
)

// EventCursorHeader tells a client of /v1/events where its stream starts: the ID
// after which events follow. A client that asked for events "from now" resumes
// from it (or from the last event it got) with nothing missed.
const EventCursorHeader = "X-Swarmlet-Event-Cursor"

// eventsPerWrite bounds one read of the log between flushes.
const eventsPerWrite = 512

// handleEvents streams the event log as JSON lines: the events after ?since=ID
// (default: from now; ?tail=N: the last N), then each new one as it is applied, until the client goes,
// or, with ?follow=false, once the log's end is reached. Served by the leader, the
// stream ends when its leadership does; the client resumes from its last ID
// through any node.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	q := r.URL.Query()
	snap := st.Snapshot()
	cursor := snap.LastEventID()
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, badRequest("since=%q: not an event ID", v))
			return
		}
		cursor = n
	} else if v := q.Get("tail"); v != "" {
		// The last N events, then what follows (the dashboard's first view).
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, badRequest("tail=%q: not a number of events", v))
			return
		}
		_, first := snap.Events(0, 1)
		cursor = max(cursor-min(cursor, n), first-min(first, 1))
	}
	follow := q.Get("follow") != "false"
	if _, first := snap.Events(cursor, 1); first > 0 && cursor+1 < first {
		writeError(w, badRequest("events up to %d are no longer kept (the log keeps the last %d): resume from %d, or read what is kept with --since 0",
			first-1, raftstore.EventRingSize, first-1))
		return
	}
	stale := q.Has("stale")
	leading := st.IsLeader()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set(EventCursorHeader, strconv.FormatUint(cursor, 10))
	w.Header().Set("X-Swarmlet-Index", strconv.FormatUint(snap.Index(), 10))
	w.WriteHeader(http.StatusOK)
	out := flushWriter{w: w}
	enc := json.NewEncoder(out)
	for {
		snap := st.Snapshot()
		evs, _ := snap.Events(cursor, eventsPerWrite)
		if len(evs) > 0 && evs[0].ID != cursor+1 {
			// The ring moved past this client while it read: say so rather than skip.
			_ = enc.Encode(api.ErrorBody{Error: "the event log moved past this stream (too slow a reader): resume from " + strconv.FormatUint(cursor, 10), Kind: api.ErrKindInvalid})
			return
		}
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return
			}
			cursor = e.ID
		}
		if len(evs) == eventsPerWrite {
			continue
		}
		if !follow {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		st.State().WaitIndex(ctx, snap.Index())
		cancel()
		if r.Context().Err() != nil {
			return
		}
		if leading && !stale && !st.IsLeader() {
			return // a deposed leader's log stops: the client resumes with the new one
		}
	}
}
