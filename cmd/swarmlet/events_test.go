package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// eventStream runs `swarmlet events` against node i and collects what it prints.
type eventStream struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	raw  []string
	evs  []api.Event
	recv []time.Time
	done chan struct{}
}

func (c *cluster) streamEvents(t *testing.T, i int, args ...string) *eventStream {
	t.Helper()
	cmd := exec.Command(swarmletBin, append([]string{"--host", c.sock(i), "events", "--format", "json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &eventStream{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e api.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("event line %q: %v", sc.Text(), err)
				continue
			}
			s.mu.Lock()
			s.raw, s.evs, s.recv = append(s.raw, sc.Text()), append(s.evs, e), append(s.recv, time.Now())
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("events stderr: %s", stderr.String())
		}
	})
	return s
}

// has reports whether an event matching f has arrived.
func (s *eventStream) has(f func(api.Event) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.evs, f)
}

func (s *eventStream) stop(t *testing.T) ([]string, []api.Event, []time.Time) {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("events did not stop on SIGINT")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw, s.evs, s.recv
}

// TestEventsAcrossLeaderChange follows the event log through a follower while
// the leader is killed: the stream resumes by itself, and what it printed is the
// log itself, each event once, in order, as another manager holds it.
func TestEventsAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, opsNet)
	c.start(1, "")
	tok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	c.start(2, tok)
	c.start(3, tok)
	waitFor(t, 15*time.Second, "3 managers reachable", func() bool {
		inf, err := c.info(3)
		return err == nil && inf.Managers == 3 && inf.ManagersUp == 3
	})
	inf, _ := c.info(1)
	oldLeader := inf.LeaderID

	s := c.streamEvents(t, 3, "--since", "0")
	c.mustCLI(2, "service", "create", "--name", "web", "--replicas", "2", "-p", "80", whoamiBin)
	waitFor(t, 10*time.Second, "web's tasks running in the stream", func() bool {
		return s.has(func(e api.Event) bool { return e.Type == api.EventTask && e.Action == "running" && e.Name == "web.2" })
	})

	c.kill(1)
	waitFor(t, 15*time.Second, "a new leader's election in the stream", func() bool {
		return s.has(func(e api.Event) bool { return e.Type == api.EventLeader && e.ObjectID != oldLeader })
	})
	scaled := time.Now()
	c.mustCLI(2, "service", "scale", "web=4")
	waitFor(t, 15*time.Second, "the scale's tasks running in the stream", func() bool {
		return s.has(func(e api.Event) bool { return e.Type == api.EventTask && e.Action == "running" && e.Name == "web.4" })
	})
	// Gossip takes a few seconds to call the killed node dead; the new leader then records it.
	waitFor(t, 20*time.Second, "the old leader down in the stream", func() bool {
		return s.has(func(e api.Event) bool {
			return e.Type == api.EventNode && e.Action == "down" && e.ObjectID == oldLeader
		})
	})
	raw, evs, recv := s.stop(t)

	// Each event once, in order, numbered from 1 without a gap.
	for i, e := range evs {
		if e.ID != uint64(i+1) {
			t.Fatalf("event %d of the stream has ID %d: missed or repeated (%s)", i+1, e.ID, raw[i])
		}
	}
	// The same log as a surviving manager's, byte for byte.
	full := strings.Split(strings.TrimSpace(c.mustCLI(2, "events", "--since", "0", "--no-follow", "--format", "json")), "\n")
	if len(full) < len(raw) || !slices.Equal(full[:len(raw)], raw) {
		t.Fatalf("streamed %d events that are not the log's first %d", len(raw), len(raw))
	}
	for _, want := range []func(api.Event) bool{
		func(e api.Event) bool { return e.Type == api.EventService && e.Action == "create" && e.Name == "web" },
		func(e api.Event) bool { return e.Type == api.EventService && e.Action == "scale" && e.Name == "web" },
	} {
		if !slices.ContainsFunc(evs, want) {
			t.Errorf("an expected event is missing from the stream")
		}
	}

	// Latency: from the proposer's time of each event after the scale to its line
	// reaching the reader (through a follower that proxies to the leader).
	var lat []time.Duration
	for i, e := range evs {
		if !e.Time.IsZero() && e.Time.After(scaled) {
			lat = append(lat, recv[i].Sub(e.Time))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		t.Logf("event stream latency over %d events: p50 %s, max %s", len(lat), lat[len(lat)/2], lat[len(lat)-1])
	}
}
