package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/scenarios/bed"
)

// nodeLoad sends requests without pause and records, per answering node (or
// task: the whoami field named by key), when it answered, and every failure.
type nodeLoad struct {
	mu       sync.Mutex
	answers  map[string][]time.Time // by node (or task) ID
	failures []failure
	stop     chan struct{}
	done     chan struct{}
}

type failure struct {
	at  time.Time
	err string
}

func startNodeLoad(hc *http.Client, url, key string) *nodeLoad {
	l := &nodeLoad{answers: map[string][]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			resp, err := hc.Get(url)
			now := time.Now()
			node := ""
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
				for _, f := range strings.Fields(string(b)) {
					if v, ok := strings.CutPrefix(f, key+"="); ok {
						node = v
					}
				}
			}
			l.mu.Lock()
			if err != nil {
				l.failures = append(l.failures, failure{now, err.Error()})
			} else {
				l.answers[node] = append(l.answers[node], now)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *nodeLoad) close() { close(l.stop); <-l.done }

// lastAnswer is when id last answered (zero: never).
func (l *nodeLoad) lastAnswer(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if as := l.answers[id]; len(as) > 0 {
		return as[len(as)-1]
	}
	return time.Time{}
}

// answeredSince reports whether node answered after t.
func (l *nodeLoad) answeredSince(node string, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	as := l.answers[node]
	return len(as) > 0 && as[len(as)-1].After(t)
}

// longestGap is the longest time node did not answer within [from, to].
func (l *nodeLoad) longestGap(node string, from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, gap := from, time.Duration(0)
	for _, at := range l.answers[node] {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

func (l *nodeLoad) failed(from time.Time) (n int, errs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures {
		if !f.at.Before(from) {
			n++
			if len(errs) < 5 {
				errs = append(errs, f.err)
			}
		}
	}
	return n, errs
}

// containersOf lists a host's running containers of a service by task ID.
func containersOf(t *testing.T, h *bed.Host, svc string) map[string]string {
	t.Helper()
	out, err := h.Docker(context.Background(), "ps", "--no-trunc", "--filter", "label=swarmlet.service="+svc,
		"--format", `{{.ID}} {{.Label "swarmlet.task"}}`)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			if _, dup := m[f[1]]; dup {
				t.Fatalf("%s runs two containers of task %s", h.Name, f[1])
			}
			m[f[1]] = f[0]
		}
	}
	return m
}

// TestEngineRestartBed: two hosts with an engine each, 4 replicas over both, a
// client on host 1 sending through the published port without pause. Host 2's
// dockerd is restarted, as an engine upgrade does. With live-restore its
// containers keep running and are adopted; without, dockerd stops them and the
// worker starts them again, as the same tasks, once the engine is back. Either
// way: no task is replaced or moved, no duplicate is left running, host 2's
// tasks serve again, and the test records how long they did not.
func TestEngineRestartBed(t *testing.T) {
	ensureWhoami(t)
	for _, tc := range []struct {
		name string
		live bool
	}{{"live-restore", true}, {"no live-restore", false}} {
		t.Run(tc.name, func(t *testing.T) {
			bc := newBedClusterWith(t, bed.Options{Hosts: 2, Label: "swarmlet-engine-restart-test", LiveRestore: tc.live})
			ctx := context.Background()
			for _, h := range bc.b.Hosts {
				if err := h.LoadImage(ctx, "swarmlet/whoami:test"); err != nil {
					t.Fatal(err)
				}
			}
			bc.up()
			bc.mustCLI(1, "service", "create", "--name", "web", "--replicas", "4", "-p", "80", "swarmlet/whoami:test")
			var nodes []nodeJSON
			if err := json.Unmarshal([]byte(bc.mustCLI(1, "node", "ls", "--format", "json")), &nodes); err != nil {
				t.Fatal(err)
			}
			n2 := ""
			for _, n := range nodes {
				if n.Hostname == "h2" {
					n2 = n.ID
				}
			}
			var svcs []serviceJSON
			if err := json.Unmarshal([]byte(bc.mustCLI(1, "service", "inspect", "web")), &svcs); err != nil || len(svcs) != 1 {
				t.Fatal(err)
			}
			url := fmt.Sprintf("http://%s:%d/", bc.host(1).Addr, svcs[0].Ports[0].PublishedPort)
			before := bc.tasks("web")
			history := strings.Fields(bc.mustCLI(1, "service", "ps", "--all", "-q", "web"))
			onH2 := containersOf(t, bc.host(2), "web")
			if len(onH2) != 2 {
				t.Fatalf("host 2 runs %d tasks, want 2 of 4", len(onH2))
			}
			load := startNodeLoad(bc.host(1).HTTPClient(3*time.Second), url, "node")
			defer load.close()
			waitFor(t, 20*time.Second, "host 2's tasks answering", func() bool { return load.answeredSince(n2, time.Now().Add(-time.Second)) })

			start := time.Now()
			away, err := bc.host(2).RestartEngine(ctx)
			if err != nil {
				t.Fatal(err)
			}
			restarted := time.Now()
			waitFor(t, 60*time.Second, "host 2's tasks answering again", func() bool {
				return len(containersOf(t, bc.host(2), "web")) == 2 && load.answeredSince(n2, restarted.Add(time.Second))
			})
			back := time.Now()
			out := load.longestGap(n2, start, back)
			fails, errs := load.failed(start)
			t.Logf("dockerd of host 2 restarted (live-restore %v): engine away %v; host 2's tasks out of service for %v; %d requests failed %v",
				tc.live, away.Round(time.Millisecond), out.Round(time.Millisecond), fails, errs)

			after := bc.tasks("web")
			ids := func(ts []imgBedTask) []string {
				var out []string
				for _, x := range ts {
					if x.Current == "running" && x.Desired == "running" {
						out = append(out, x.ID)
					}
				}
				sort.Strings(out)
				return out
			}
			if b, a := ids(before), ids(after); strings.Join(b, ",") != strings.Join(a, ",") || len(a) != 4 {
				t.Fatalf("running tasks before %v, after %v: a task was replaced\n%s", b, a, bc.mustCLI(1, "service", "ps", "--all", "web"))
			}
			if all := strings.Fields(bc.mustCLI(1, "service", "ps", "--all", "-q", "web")); strings.Join(all, ",") != strings.Join(history, ",") {
				t.Fatalf("tasks were added across the restart:\n%s", bc.mustCLI(1, "service", "ps", "--all", "web"))
			}
			nowH2 := containersOf(t, bc.host(2), "web")
			total := len(containersOf(t, bc.host(1), "web")) + len(nowH2)
			if total != 4 {
				t.Fatalf("%d containers running, want 4", total)
			}
			for task, ctr := range onH2 {
				switch {
				case nowH2[task] == "":
					t.Fatalf("task %s no longer runs on host 2", task)
				case tc.live && nowH2[task] != ctr:
					t.Fatalf("task %s: live-restore kept container %s, yet it runs %s now", task, ctr, nowH2[task])
				case !tc.live && nowH2[task] == ctr:
					t.Fatalf("task %s: container %s survived a dockerd stop without live-restore?", task, ctr)
				}
			}
		})
	}
}
