// Package testlog is the one test logger: slog output goes to t.Log until the test
// ends (background loops may log a little later, which t.Log would turn into a
// panic). TESTLOG_LEVEL=debug shows everything.
package testlog

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// New returns a logger writing to t.Log at level (info when TESTLOG_LEVEL is unset
// and no level is given).
func New(t testing.TB, level ...slog.Level) *slog.Logger {
	w := &writer{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	lv := slog.LevelDebug
	if len(level) > 0 {
		lv = level[0]
	}
	if v := os.Getenv("TESTLOG_LEVEL"); v != "" {
		_ = lv.UnmarshalText([]byte(v))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}
