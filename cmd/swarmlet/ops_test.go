package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Tests of the operator's view (issue 13) run on 127.64.x.x.
const opsNet = 64

// TestOperatorCLI drives the docker-shaped CLI against a real two-manager cluster:
// join commands with the port, self and MANAGER STATUS in node ls, node ps, ID
// prefixes, logs with times, inspect's final newline, completion of names.
func TestOperatorCLI(t *testing.T) {
	c := newCluster(t, opsNet)
	c.start(1, "")
	// The harness runs on --port-base 24240, not the default: init must say so.
	if !regexp.MustCompile(`swarmlet join --token \S+ 127\.64\.0\.1:24240\n`).MatchString(c.log(1)) {
		t.Fatalf("init's join commands lack the port:\n%s", c.log(1))
	}
	if out := c.mustCLI(1, "join-token", "manager"); !strings.Contains(out, " 127.64.0.1:24240\n") {
		t.Fatalf("join-token lacks the port: %q", out)
	}
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager")))
	waitFor(t, 10*time.Second, "2 managers", func() bool {
		ns, err := c.nodes(1)
		return err == nil && len(ns) == 2
	})

	// node ls through node 2: * on node 2's ID, node 1 the Leader.
	out := c.mustCLI(2, "node", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "MANAGER STATUS") {
		t.Fatalf("node ls:\n%s", out)
	}
	for _, l := range lines[1:] {
		switch {
		case strings.Contains(l, "node1"):
			if strings.Contains(l, " * ") || !strings.Contains(l, "Leader") {
				t.Fatalf("node1's row: %q", l)
			}
		case strings.Contains(l, "node2"):
			if !regexp.MustCompile(`^\w+ \* `).MatchString(l) || !strings.Contains(l, "Reachable") {
				t.Fatalf("node2's row: %q", l)
			}
		}
	}
	if got := c.mustCLI(2, "node", "ls", "--filter", "name=node2", "--format", "{{.Hostname}} {{.Self}} {{.ManagerStatus}}"); got != "node2 true Reachable\n" {
		t.Fatalf("node ls template: %q", got)
	}

	// A stream from now sees what happens next, and nothing before it. It prints
	// nothing until an event comes, so label changes probe it until one shows.
	stream := c.streamEvents(t, 2)
	probe := 0
	waitFor(t, 10*time.Second, "the stream to show a probe", func() bool {
		probe++
		c.mustCLI(1, "node", "update", "--label-add", fmt.Sprintf("probe=%d", probe), "node2")
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if stream.has(func(e api.Event) bool { return e.Action == "labels" }) {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	id := strings.TrimSpace(c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "4", "-p", "80", whoamiBin))
	waitFor(t, 5*time.Second, "web's creation in the stream", func() bool {
		return stream.has(func(e api.Event) bool { return e.Action == "create" && e.ObjectID == id })
	})
	_, evs, _ := stream.stop(t)
	for i, e := range evs {
		if e.Type == api.EventCluster || e.Action == "join" || (i > 0 && e.ID != evs[i-1].ID+1) {
			t.Fatalf("the stream from now holds event %d (%s %s), from before it or out of order", e.ID, e.Type, e.Action)
		}
	}

	// A service by an ID prefix; inspect ends with a newline.
	if out := c.mustCLI(1, "service", "inspect", id[:5]); !strings.HasSuffix(out, "]\n") {
		t.Fatalf("inspect does not end with a newline: %q", out[max(0, len(out)-20):])
	}
	if got := c.mustCLI(1, "service", "inspect", "--format", "{{.Spec.Name}} {{.Desired}}", id[:5]); got != "web 4\n" {
		t.Fatalf("inspect --format: %q", got)
	}

	// node ps defaults to the node the CLI talks to.
	ns, _ := c.nodes(1)
	ids := map[string]string{}
	for _, n := range ns {
		ids[n.Hostname] = n.ID
	}
	for i, host := range map[int]string{1: "node1", 2: "node2"} {
		var rows []taskJSON
		if err := json.Unmarshal([]byte(c.mustCLI(i, "node", "ps", "--format", "json")), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			t.Fatalf("node ps on %s: no tasks", host)
		}
		for _, r := range rows {
			if r.Node != ids[host] {
				t.Fatalf("node ps on %s lists a task of node %s", host, r.Node)
			}
		}
		if other := c.mustCLI(1, "node", "ps", "-q", host); len(strings.Fields(other)) != len(rows) {
			t.Fatalf("node ps %s: %d tasks, node ps on it: %d", host, len(strings.Fields(other)), len(rows))
		}
	}

	// Logs: every task says it listens at start; with times, since, details.
	waitFor(t, 10*time.Second, "4 tasks' first lines", func() bool {
		return strings.Count(c.mustCLI(1, "service", "logs", "web"), "listening") == 4
	})
	stamped := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z web\.\d\.\w+@node\d \| swarmlet\.node=\w+,swarmlet\.service=` + id + `,swarmlet\.task=\w+ .*listening`)
	for _, l := range strings.Split(strings.TrimSpace(c.mustCLI(1, "service", "logs", "--timestamps", "--details", id[:4])), "\n") {
		if !stamped.MatchString(l) {
			t.Fatalf("timestamped line %q", l)
		}
	}
	// As docker's: a task's ID (prefix) shows that task's log alone.
	var web []taskJSON
	if err := json.Unmarshal([]byte(c.mustCLI(1, "service", "ps", "--format", "json", "web")), &web); err != nil || len(web) == 0 {
		t.Fatalf("service ps: %v", err)
	}
	if got := c.mustCLI(1, "service", "logs", web[0].ID[:8]); strings.Count(got, "listening") != 1 || !strings.Contains(got, web[0].ID) {
		t.Fatalf("logs of task %s: %q", web[0].ID, got)
	}
	if got := c.mustCLI(2, "service", "logs", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "web"); got != "" {
		t.Fatalf("logs since an hour ahead: %q", got)
	}
	if got := c.mustCLI(2, "service", "logs", "--since", "1h", "web"); strings.Count(got, "listening") != 4 {
		t.Fatalf("logs since an hour ago: %q", got)
	}

	// Completion asks the daemon for names.
	if got := c.mustCLI(1, "__complete", "service", "ps", ""); !strings.Contains(got, "web\n") {
		t.Fatalf("service completion: %q", got)
	}
	if got := c.mustCLI(1, "__complete", "service", "scale", "w"); !strings.Contains(got, "web=\n") {
		t.Fatalf("scale completion: %q", got)
	}
	if got := c.mustCLI(1, "__complete", "node", "inspect", "node"); !strings.Contains(got, "node1\t") || !strings.Contains(got, "node2\t") {
		t.Fatalf("node completion: %q", got)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := c.mustCLI(1, "completion", shell); !strings.Contains(out, "swarmlet") {
			t.Fatalf("completion %s: %q", shell, out[:min(len(out), 80)])
		}
	}

	c.expectError(t, 1, `unknown key "colour"`, "service", "ps", "--filter", "colour=red", "web")
	c.expectError(t, 1, `invalid --format`, "node", "ps", "--format", "{{.Nope}}")
	c.expectError(t, 1, `not found`, "node", "ps", "nosuchnode")
}
