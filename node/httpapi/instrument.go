package httpapi

import (
	"net/http"
	"time"

	"github.com/swarmlet/swarmlet/raftstore"
)

// instrument times a route's requests for Config.ObserveRequest, keyed by the
// route's pattern (never the raw path: IDs would make a series per object).
func (s *Server) instrument(pattern string, h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.ObserveRequest == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		s.cfg.ObserveRequest(pattern, code, time.Since(start))
	}
}

// statusWriter remembers the status code. It keeps streaming working: Flush and
// Unwrap reach the real writer (log streams and the proxy flush as they go).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// handleMetrics serves this node's metrics in Prometheus's text format.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	if s.cfg.Metrics == nil {
		http.NotFound(w, r)
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

// handleUI serves the dashboard's files (Config.UI).
func (s *Server) handleUI(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	if s.cfg.UI == nil {
		http.NotFound(w, r)
		return
	}
	s.cfg.UI.ServeHTTP(w, r)
}

// handleRoot sends a browser that opens a node's address to the dashboard.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	http.Redirect(w, r, "/ui/", http.StatusFound)
}
