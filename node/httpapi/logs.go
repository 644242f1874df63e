package httpapi

import (
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
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	w.Header().Set("Content-Type", "text/plain")
	if err := s.cfg.Node.TaskLogs(r.Context(), id, follow, tail, flushWriter{w: w}); err != nil {
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
// them, each line prefixed with the task's name, as docker service logs does.
func (s *Server) handleServiceLogs(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	svc, err := findService(snap, r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	w.Header().Set("Content-Type", "text/plain")
	var mu sync.Mutex
	out := flushWriter{w: w}
	var wg sync.WaitGroup
	for _, t := range snap.TasksByService(svc.ID) {
		n := snap.Node(t.NodeID)
		if n == nil || t.Status.State < api.TaskStarting {
			continue
		}
		prefix := fmt.Sprintf("%s.%d.%s@%s | ", svc.Spec.Name, t.Slot, t.ID, n.Hostname)
		addr := net.JoinHostPort(n.Addr, strconv.Itoa(n.APIPort))
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw := &linePrefixer{prefix: prefix, mu: &mu, w: out}
			_ = s.cfg.Peers.Get(addr).TaskLogs(r.Context(), t.ID, follow, tail, lw)
			lw.flush()
		}()
	}
	wg.Wait()
}

// linePrefixer writes whole lines with a prefix, so concurrent streams interleave by line.
type linePrefixer struct {
	prefix string
	mu     *sync.Mutex
	w      io.Writer
	buf    []byte
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.mu.Lock()
		_, err := io.WriteString(l.w, l.prefix+string(l.buf[:i+1]))
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
