package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type rolloutTask struct {
	ID          string `json:"id"`
	Slot        uint64 `json:"slot"`
	Desired     string `json:"desired"`
	Current     string `json:"current"`
	Health      string `json:"health"`
	SpecVersion uint64 `json:"spec_version"`
}

type serviceJSON struct {
	ID           string `json:"id"`
	SpecVersion  uint64 `json:"spec_version"`
	UpdateStatus *struct {
		State   string `json:"state"`
		Message string `json:"message"`
	} `json:"update_status"`
	Ports []struct {
		PublishedPort int `json:"published_port"`
	} `json:"ports"`
	Spec struct {
		Env []string `json:"env"`
	} `json:"spec"`
}

func (c *cluster) service(i int, name string) serviceJSON {
	c.t.Helper()
	var out []serviceJSON
	if err := json.Unmarshal([]byte(c.mustCLI(i, "service", "inspect", name)), &out); err != nil || len(out) != 1 {
		c.t.Fatalf("inspect %s: %v", name, err)
	}
	return out[0]
}

// updating counts the slots between "a task of spec version v (or later) exists"
// and "it serves and no older task of its slot is left".
func updating(ts []rolloutTask, v uint64) int {
	type slot struct{ fresh, serves, old bool }
	slots := map[uint64]*slot{}
	for _, t := range ts {
		s := slots[t.Slot]
		if s == nil {
			s = &slot{}
			slots[t.Slot] = s
		}
		terminal := strings.Contains("complete shutdown failed rejected orphaned", t.Current)
		switch {
		case t.SpecVersion >= v:
			s.fresh = true
			s.serves = s.serves || t.Desired == "running" && t.Current == "running" && (t.Health == "" || t.Health == "healthy")
		case !terminal:
			s.old = true
		}
	}
	n := 0
	for _, s := range slots {
		if s.fresh && (!s.serves || s.old) {
			n++
		}
	}
	return n
}

// loadClient sends requests without pause through a published port, a fresh
// connection each, and counts what answered and which versions did.
type loadClient struct {
	url      string
	ok, fail atomic.Int64
	mu       sync.Mutex
	versions map[string]int
	errs     []string
	stop     chan struct{}
	done     chan struct{}
}

func startLoad(url string) *loadClient {
	l := &loadClient{url: url, versions: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			resp, err := hc.Get(l.url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					v := "?"
					if _, after, ok := strings.Cut(string(b), "version="); ok {
						v = strings.TrimSpace(after)
					}
					l.ok.Add(1)
					l.mu.Lock()
					l.versions[v]++
					l.mu.Unlock()
					continue
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			l.fail.Add(1)
			l.mu.Lock()
			if len(l.errs) < 5 {
				l.errs = append(l.errs, err.Error())
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// take returns the counts since the last call and resets them.
func (l *loadClient) take() (ok, fail int64, versions map[string]int, errs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	versions, errs, l.versions, l.errs = l.versions, l.errs, map[string]int{}, nil
	return l.ok.Swap(0), l.fail.Swap(0), versions, errs
}

func (l *loadClient) close() { close(l.stop); <-l.done }

// watchUpdating polls the tasks while f runs and returns the most slots it saw
// updating at once.
func (c *cluster) watchUpdating(ctx context.Context, v uint64) func() int {
	var most atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			out, _, err := c.cli(1, "service", "ps", "--all", "--format", "json", "web")
			var ts []rolloutTask
			if err == nil && json.Unmarshal([]byte(out), &ts) == nil {
				if n := int64(updating(ts, v)); n > most.Load() {
					most.Store(n)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int { <-done; return int(most.Load()) }
}

// TestRollingUpdateProcessEngine: 6 whoami replicas behind the userspace
// balancer's published port, a client sending without pause. A rolling update
// A -> B loses no request and updates at most --update-parallelism slots at once;
// a manual rollback returns to A; an update to a version whose health check fails
// is rolled back by itself and says so; bad input changes nothing.
func TestRollingUpdateProcessEngine(t *testing.T) {
	c := newCluster(t, 63)
	c.start(1, "", "--service-range", "10.250.63.0/24")
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, wtok)
	c.start(3, wtok)
	waitFor(t, 15*time.Second, "3 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 3 })

	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "6", "-p", "80", "--env", "WHOAMI_VERSION=A",
		"--health-http", "/health", "--health-interval", "200ms", "--health-retries", "2",
		"--update-parallelism", "2", "--update-monitor", "1s", "--update-failure-action", "rollback",
		"--rollback-parallelism", "3", "--rollback-monitor", "1s", "--stop-grace-period", "5s", whoamiBin)
	svc := c.service(1, "web")
	port := svc.Ports[0].PublishedPort
	url := fmt.Sprintf("http://%s:%d/", c.ip(1), port)
	waitFor(t, 20*time.Second, "web answering through the published port", func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	load := startLoad(url)
	defer load.close()
	time.Sleep(500 * time.Millisecond)
	load.take()

	// A -> B.
	ctx, cancel := context.WithCancel(context.Background())
	most := c.watchUpdating(ctx, svc.SpecVersion+1)
	start := time.Now()
	out, errOut, err := c.cli(1, "service", "update", "--env-add", "WHOAMI_VERSION=B", "web")
	took := time.Since(start)
	cancel()
	if err != nil {
		t.Fatalf("update: %v\n%s%s", err, out, errOut)
	}
	ok, fail, versions, errs := load.take()
	t.Logf("rolling update of 6 replicas A->B took %v: %d requests ok, %d failed %v, versions %v, at most %d slots updating",
		took.Round(time.Millisecond), ok, fail, errs, versions, most())
	if fail != 0 || ok == 0 {
		t.Fatalf("%d of %d requests failed during the rolling update: %v", fail, ok+fail, errs)
	}
	if n := most(); n > 2 {
		t.Fatalf("%d slots updating at once, --update-parallelism 2", n)
	}
	if st := c.service(1, "web").UpdateStatus; st == nil || st.State != "completed" {
		t.Fatalf("update status %+v", st)
	}
	c.onlyVersion(t, load, "B")
	if !strings.Contains(c.mustCLI(1, "service", "ls"), "completed") {
		t.Fatal("service ls does not show the update state")
	}

	// A manual rollback: back to A with the rollback settings.
	if out, errOut, err := c.cli(1, "service", "rollback", "web"); err != nil || !strings.Contains(errOut, "rollback completed") {
		t.Fatalf("rollback: %v\n%s%s", err, out, errOut)
	}
	if st := c.service(1, "web").UpdateStatus; st == nil || st.State != "rollback_completed" {
		t.Fatalf("after service rollback: %+v", st)
	}
	c.onlyVersion(t, load, "A")
	if _, fail, _, errs := load.take(); fail != 0 {
		t.Fatalf("%d requests failed during the rollback: %v", fail, errs)
	}

	// An update whose new tasks never pass their health check rolls back by itself.
	start = time.Now()
	_, errOut, err = c.cli(1, "service", "update", "--env-add", "WHOAMI_VERSION=C", "--env-add", "WHOAMI_HEALTH=fail", "web")
	t.Logf("failing update rolled back after %v; the CLI said:\n%s", time.Since(start).Round(time.Millisecond), errOut)
	if err == nil || !strings.Contains(errOut, "rolled back") {
		t.Fatalf("an update to a failing version: %v %q", err, errOut)
	}
	got := c.service(1, "web")
	if got.UpdateStatus == nil || got.UpdateStatus.State != "rollback_completed" || !strings.Contains(got.UpdateStatus.Message, "health") {
		t.Fatalf("after the failing update: %+v", got.UpdateStatus)
	}
	for _, e := range got.Spec.Env {
		if e == "WHOAMI_HEALTH=fail" {
			t.Fatalf("the spec still has the failing version: %v", got.Spec.Env)
		}
	}
	c.onlyVersion(t, load, "A")
	if _, fail, versions, errs := load.take(); fail != 0 || versions["C"] != 0 {
		t.Fatalf("during the failed update: %d requests failed %v, %d answered by the unhealthy version", fail, errs, versions["C"])
	}

	// A crash is replaced at once: the first exit of a slot waits for no delay.
	ts, _ := c.tasks(1, "web")
	victim := running(t, ts)[3]
	killTaskProcess(t, victim.ID)
	crashed := time.Now()
	waitFor(t, 20*time.Second, "slot 3 replaced", func() bool {
		ts, err := c.tasks(1, "web")
		r := running(t, ts)
		return err == nil && r[3].ID != "" && r[3].ID != victim.ID
	})
	t.Logf("crash to replacement running: %v", time.Since(crashed).Round(time.Millisecond))

	// Bad input: one clear line, nothing changed.
	c.mustCLI(1, "service", "create", "--name", "fresh", "--replicas", "0", "--detach", whoamiBin)
	// Wait for the replacement's health reports to settle: then nothing but bad
	// input could move the index.
	var before infoJSON
	waitFor(t, 20*time.Second, "a quiet cluster", func() bool {
		a, _ := c.info(1)
		time.Sleep(time.Second)
		before, _ = c.info(1)
		return a.RaftIndex == before.RaftIndex
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"service", "update", "--bogus", "web"}, "unknown flag: --bogus"},
		{"negative parallelism", []string{"service", "update", "--update-parallelism", "-1", "web"}, "invalid --update-parallelism -1"},
		{"ratio above 1", []string{"service", "update", "--update-max-failure-ratio", "2", "web"}, "between 0 and 1"},
		{"bad order", []string{"service", "update", "--update-order", "sideways", "web"}, "stop-first or start-first"},
		{"rollback without a previous spec", []string{"service", "rollback", "fresh"}, "no previous spec"},
		{"update of a missing service", []string{"service", "update", "--image", "x", "nosuch"}, "not found"},
		{"rollback of a missing service", []string{"service", "rollback", "nosuch"}, "not found"},
		{"rollback with other changes", []string{"service", "update", "--rollback", "--image", "x", "web"}, "cannot be combined"},
	} {
		t.Run(tc.name, func(t *testing.T) { c.expectError(t, 1, tc.want, tc.args...) })
	}
	if after, _ := c.info(1); after.RaftIndex != before.RaftIndex {
		t.Fatalf("bad input changed the state: index %d -> %d", before.RaftIndex, after.RaftIndex)
	}
	c.mustCLI(1, "service", "rm", "web", "fresh")
	waitFor(t, 20*time.Second, "no process left", func() bool { return taskProcesses("web") == 0 })
}

// onlyVersion waits until every answer in a half-second window comes from version v.
func (c *cluster) onlyVersion(t *testing.T, l *loadClient, v string) {
	t.Helper()
	waitFor(t, 20*time.Second, "only version "+v+" answering", func() bool {
		l.mu.Lock()
		l.versions = map[string]int{}
		l.mu.Unlock()
		time.Sleep(500 * time.Millisecond)
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.versions[v] > 0 && len(l.versions) == 1
	})
}
