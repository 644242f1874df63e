package process

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/node/engine"
)

func TestStampLookup(t *testing.T) {
	t0 := time.Unix(1000, 0)
	marks := []mark{{10, t0}, {25, t0.Add(time.Second)}, {40, t0.Add(2 * time.Second)}}
	for _, tc := range []struct {
		end  int64
		want time.Time
	}{{1, t0}, {10, t0}, {11, t0.Add(time.Second)}, {40, t0.Add(2 * time.Second)}} {
		if got := stampAt(marks, tc.end); !got.Equal(tc.want) {
			t.Errorf("stampAt(%d) = %v, want %v", tc.end, got, tc.want)
		}
	}
	if got := stampAt(marks, 41); time.Since(got) > time.Second {
		t.Errorf("past the last mark: %v, want now", got)
	}
	for _, tc := range []struct {
		since time.Time
		want  int64
	}{{t0.Add(-time.Second), 0}, {t0, 0}, {t0.Add(time.Millisecond), 10}, {t0.Add(2 * time.Second), 25}, {t0.Add(time.Hour), 40}} {
		if got := offsetSince(marks, tc.since); got != tc.want {
			t.Errorf("offsetSince(%v) = %d, want %d", tc.since.Sub(t0), got, tc.want)
		}
	}
}

// TestLogTimestamps: lines carry the time they were written, --since keeps the
// later ones, and a new engine over the same data dir reads the same times.
func TestLogTimestamps(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, engine.Config{DataDir: dir})
	gate := filepath.Join(t.TempDir(), "gate")
	if _, err := e.Start(context.Background(), shTask("t-ts",
		"echo early; while [ ! -e "+gate+" ]; do sleep 0.02; done; echo late")); err != nil {
		t.Fatal(err)
	}
	logs := func(e *Engine, opt engine.LogOptions) string {
		var sb strings.Builder
		if err := e.Logs(context.Background(), "t-ts", opt, &sb); err != nil {
			t.Fatal(err)
		}
		return sb.String()
	}
	// A stamped read marks the log itself, as inotify does (which a machine
	// with every inotify instance taken may not give): the first line has its
	// time before the gate.
	waitFor(t, 5*time.Second, "first line", func() bool {
		return strings.HasSuffix(logs(e, engine.LogOptions{Timestamps: true}), " early\n")
	})
	time.Sleep(50 * time.Millisecond) // the two writes must be apart for their times to differ
	between := time.Now()
	time.Sleep(50 * time.Millisecond)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "exit", func() bool {
		inst, _ := findInstance(t, e, "t-ts")
		return inst.State.Terminal()
	})
	check := func(e *Engine) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(logs(e, engine.LogOptions{Timestamps: true}), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("timestamped logs: %q", lines)
		}
		var times []time.Time
		for i, want := range []string{"early", "late"} {
			ts, msg, _ := strings.Cut(lines[i], " ")
			at, err := time.Parse(engine.TimestampFormat, ts)
			if err != nil || msg != want || len(ts) != len("2006-01-02T15:04:05.000000000Z") {
				t.Fatalf("line %q: %v", lines[i], err)
			}
			times = append(times, at)
		}
		if !times[0].Before(between) || times[1].Before(between) {
			t.Fatalf("early at %v, late at %v, written around %v", times[0], times[1], between)
		}
		if got := logs(e, engine.LogOptions{Since: between}); got != "late\n" {
			t.Fatalf("since the gate: %q", got)
		}
		if got := logs(e, engine.LogOptions{Since: between.Add(time.Hour)}); got != "" {
			t.Fatalf("since the future: %q", got)
		}
	}
	check(e)
	e.Close()
	e2 := newEngine(t, engine.Config{DataDir: dir})
	check(e2)

	// Following with times stamps the lines that come later too.
	gate2 := filepath.Join(t.TempDir(), "gate")
	if _, err := e2.Start(context.Background(), shTask("t-ts2", "echo one; while [ ! -e "+gate2+" ]; do sleep 0.02; done; echo two")); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_ = e2.Logs(context.Background(), "t-ts2", engine.LogOptions{Follow: true, Timestamps: true}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) == 1 {
			// The follower has read the first line: the second comes while it follows.
			if err := os.WriteFile(gate2, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " one") || !strings.HasSuffix(lines[1], " two") {
		t.Fatalf("followed with times: %q", lines)
	}
	for _, l := range lines {
		if _, err := time.Parse(engine.TimestampFormat, strings.Fields(l)[0]); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
	}
}
