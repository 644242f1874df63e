package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/raftstore"
)

func (s *Server) handleLocalLogs(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	id := r.PathValue("id")
	if err := api.ValidateID(id); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	opt, err := api.ParseLogOptions(r.URL.Query())
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	if err := s.cfg.Node.TaskLogs(r.Context(), id, opt, flushWriter{w: w}); err != nil {
		writeError(w, fmt.Errorf("logs of task %s: %w", id, err))
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// handleServiceLogs gathers the logs of a service's tasks from the nodes that run
// them, each line prefixed with the task's name, as docker service logs does. As
// there, the service may also be named by one of its tasks' IDs (or a unique
// prefix of one): then only that task's log is shown.
func (s *Server) handleServiceLogs(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	ref := r.PathValue("name")
	svc, err := findService(snap, ref)
	var only string
	if errors.Is(err, api.ErrNotFound) {
		if t := findTask(snap, ref); t != nil {
			if svc = snap.Service(t.ServiceID); svc != nil {
				only, err = t.ID, nil
			}
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	opt, err := api.ParseLogOptions(r.URL.Query())
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	var mu sync.Mutex
	out := flushWriter{w: w}
	var wg sync.WaitGroup
	for _, t := range snap.TasksByService(svc.ID) {
		if only != "" && t.ID != only {
			continue
		}
		n := snap.Node(t.NodeID)
		if n == nil || t.Status.State < api.TaskStarting {
			continue
		}
		prefix := fmt.Sprintf("%s.%d.%s@%s | ", svc.Spec.Name, t.Slot, t.ID, n.Hostname)
		if opt.Details {
			// As docker's --details: the attributes, then the message.
			prefix += fmt.Sprintf("swarmlet.node=%s,swarmlet.service=%s,swarmlet.task=%s ", n.ID, svc.ID, t.ID)
		}
		addr := net.JoinHostPort(n.Addr, strconv.Itoa(n.APIPort))
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw := &linePrefixer{prefix: prefix, mu: &mu, w: out, stamped: opt.Timestamps}
			_ = s.cfg.Peers.Get(addr).TaskLogs(r.Context(), t.ID, api.LogOptions{Follow: opt.Follow, Tail: opt.Tail, Since: opt.Since, Timestamps: opt.Timestamps}, lw)
			lw.flush()
		}()
	}
	wg.Wait()
}

// findTask resolves a task ID or a unique ID prefix (at least 3 characters).
func findTask(snap *raftstore.Snapshot, ref string) *api.Task {
	if t := snap.Task(ref); t != nil {
		return t
	}
	if len(ref) < 3 {
		return nil
	}
	var found *api.Task
	for _, t := range snap.Tasks() {
		if strings.HasPrefix(t.ID, ref) {
			if found != nil {
				return nil
			}
			found = t
		}
	}
	return found
}

// linePrefixer writes whole lines with a prefix, so concurrent streams interleave
// by line. A stamped line's time stays first, as docker prints it.
type linePrefixer struct {
	prefix  string
	mu      *sync.Mutex
	w       io.Writer
	buf     []byte
	stamped bool
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		line := l.prefix + string(l.buf[:i+1])
		if ts, msg, ok := strings.Cut(string(l.buf[:i+1]), " "); l.stamped && ok {
			line = ts + " " + l.prefix + msg
		}
		l.mu.Lock()
		_, err := io.WriteString(l.w, line)
		l.mu.Unlock()
		l.buf = l.buf[i+1:]
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (l *linePrefixer) flush() {
	if len(l.buf) > 0 {
		_, _ = l.Write([]byte("\n"))
	}
}
