package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// golden compares got with testdata/NAME.golden (or writes it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sampleNodes() []api.NodeInfo {
	return []api.NodeInfo{
		{Node: api.Node{ID: "n1aaaaaaaaaa", Hostname: "node1", Addr: "10.0.0.1", Role: api.RoleManager, Status: api.NodeReady, Availability: api.AvailabilityActive, Engine: "docker", Labels: map[string]string{"zone": "a"}}, Leader: true},
		{Node: api.Node{ID: "n2bbbbbbbbbb", Hostname: "node2", Addr: "10.0.0.2", Role: api.RoleManager, Status: api.NodeDown, Availability: api.AvailabilityActive, Engine: "docker"}},
		{Node: api.Node{ID: "n3cccccccccc", Hostname: "node3", Addr: "10.0.0.3", Role: api.RoleWorker, Status: api.NodeReady, Availability: api.AvailabilityDrain, Engine: "process", Labels: map[string]string{"zone": "b", "gpu": "1"}}},
	}
}

func sampleServices() []api.ServiceInfo {
	return []api.ServiceInfo{
		{Service: api.Service{ID: "s1web0000000", Spec: api.ServiceSpec{Name: "web", Image: "nginx:1.27", Mode: api.ModeReplicated, Replicas: 3, Labels: map[string]string{"tier": "front"}},
			VIP: "10.43.0.2", Ports: []api.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080}}}, Running: 2, Desired: 3},
		{Service: api.Service{ID: "s2agent00000", Spec: api.ServiceSpec{Name: "agent", Image: "agent:2", Mode: api.ModeGlobal}}, Running: 3, Desired: 3},
	}
}

func sampleTasks() []api.Task {
	task := func(id string, slot uint64, node string, desired, state api.TaskState, create uint64, ago time.Duration, errText string) api.Task {
		return api.Task{ID: id, ServiceID: "s1web0000000", ServiceName: "web", Slot: slot, NodeID: node, Spec: api.ServiceSpec{Image: "nginx:1.27"},
			DesiredState: desired, Status: api.TaskStatus{State: state, Err: errText, Timestamp: t0.Add(-ago)}, CreateIndex: create}
	}
	pending := task("t4pending0000000000000000a", 3, "", api.TaskRunning, api.TaskPending, 40, 5*time.Second, "")
	pending.PendingReason = "3 nodes: 1 down, 1 drained, 1 lacks memory (reserve-memory 4GiB)"
	running := task("t5running0000000000000000a", 1, "n3cccccccccc", api.TaskRunning, api.TaskRunning, 30, 2*time.Minute, "")
	running.Status.Ports = []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: 30001}}
	return []api.Task{
		task("t1old000000000000000000000", 1, "n2bbbbbbbbbb", api.TaskShutdown, api.TaskFailed, 10, time.Hour, "exit status 1: the program said something long and unhelpful"),
		running,
		task("t2old000000000000000000000", 1, "n1aaaaaaaaaa", api.TaskShutdown, api.TaskOrphaned, 20, 30*time.Minute, ""),
		task("t3running0000000000000000a", 2, "n1aaaaaaaaaa", api.TaskRunning, api.TaskRunning, 31, 3*time.Hour, ""),
		pending,
	}
}

func TestGoldenFormats(t *testing.T) {
	now = func() time.Time { return t0 }
	t.Cleanup(func() { now = time.Now })
	noTrunc := false
	ps := psListing(&noTrunc)
	for _, tc := range []struct {
		name    string
		format  string
		quiet   bool
		noTrunc bool
		filter  []string
		print   func(o output, f filters) string
	}{
		{name: "node_ls", print: printNodes},
		{name: "node_ls_json", format: "json", print: printNodes},
		{name: "node_ls_template", format: "{{.Hostname}}: {{.ManagerStatus}}{{if .Self}} (self){{end}} [{{.Labels}}]", print: printNodes},
		{name: "node_ls_table_template", format: "table {{.ID}}\t{{.Hostname}}\t{{.ManagerStatus}}", print: printNodes},
		{name: "node_ls_docker_json", format: "{{json .}}", print: printNodes},
		{name: "node_ls_filtered", filter: []string{"role=manager", "label=zone=a", "label=gpu"}, print: printNodes},
		{name: "node_ls_quiet", quiet: true, filter: []string{"availability=drain"}, print: printNodes},
		{name: "service_ls", print: printServices},
		{name: "service_ls_json", format: "json", print: printServices},
		{name: "service_ls_table_template", format: "table {{.Name}}\t{{.Running}}/{{.Desired}}\t{{upper .Mode}}", print: printServices},
		{name: "service_ls_filtered", format: "{{.Name}}", filter: []string{"mode=global", "name=ag"}, print: printServices},
		{name: "service_ps_history", print: func(o output, f filters) string { return printTasks(ps, o, f, true) }},
		{name: "service_ps_current", print: func(o output, f filters) string { return printTasks(ps, o, f, false) }},
		{name: "service_ps_no_trunc", noTrunc: true, print: func(o output, f filters) string { return printTasks(ps, o, f, true) }},
		{name: "service_ps_json", format: "json", print: func(o output, f filters) string { return printTasks(ps, o, f, true) }},
		{name: "service_ps_docker_json", format: "{{json .}}", filter: []string{"desired-state=running"}, print: func(o output, f filters) string { return printTasks(ps, o, f, true) }},
		{name: "service_ps_node", format: "table {{.Name}}\t{{.Node}}\t{{.CurrentState}}\t{{.Ports}}", filter: []string{"node=node1", "node=n3c"}, print: func(o output, f filters) string { return printTasks(ps, o, f, true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noTrunc = tc.noTrunc
			f, err := parseFilters(tc.filter, append(append(nodeFilterKeys, serviceFilterKeys...), taskFilterKeys...))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, tc.print(output{format: tc.format, quiet: tc.quiet, noTrunc: tc.noTrunc}, f))
		})
	}
}

func printNodes(o output, f filters) string {
	var b bytes.Buffer
	if err := nodeListing.print(&b, o, nodeRows(sampleNodes(), "n3cccccccccc", f)); err != nil {
		return "error: " + err.Error()
	}
	return b.String()
}

func printServices(o output, f filters) string {
	var b bytes.Buffer
	if err := serviceListing.print(&b, o, serviceRows(sampleServices(), f)); err != nil {
		return "error: " + err.Error()
	}
	return b.String()
}

func printTasks(l listing[taskRow], o output, f filters, all bool) string {
	var b bytes.Buffer
	if err := l.print(&b, o, taskRows(sampleTasks(), sampleNodes(), all, f)); err != nil {
		return "error: " + err.Error()
	}
	return b.String()
}

// TestFormatErrors: bad templates and filters fail before any request, with one
// line that says what is wrong.
func TestFormatErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"unclosed action", func() error { _, err := parseFormat("{{.Name", serviceListing.table, serviceView{}); return err }, `invalid --format "{{.Name": format:1: unclosed action`},
		{"unknown field", func() error { _, err := parseFormat("{{.Nope}}", serviceListing.table, serviceView{}); return err }, `can't evaluate field Nope`},
		{"no action", func() error { _, err := parseFormat("xml", nodeListing.table, nodeView{}); return err }, `invalid --format "xml": use table, json`},
		{"unknown function", func() error {
			_, err := parseFormat("{{bogus .Name}}", serviceListing.table, serviceView{})
			return err
		}, `function "bogus" not defined`},
		{"table with unknown field", func() error { _, err := parseFormat("table {{.Nope}}", nodeListing.table, nodeView{}); return err }, `can't evaluate field Nope`},
		{"unknown filter key", func() error { _, err := checkNodeFilters([]string{"color=red"}); return err }, `unknown key "color" (keys: id, name, label, node.label, role, membership, availability, status)`},
		{"filter without value", func() error { _, err := parseFilters([]string{"name"}, serviceFilterKeys); return err }, `invalid --filter "name": expected KEY=VALUE`},
		{"bad role", func() error { _, err := checkNodeFilters([]string{"role=boss"}); return err }, `invalid --filter role=boss: use one of manager, worker`},
		{"bad desired state", func() error { _, err := checkTaskFilters([]string{"desired-state=asleep"}); return err }, `invalid --filter desired-state=asleep`},
		{"bad since", func() error { _, err := parseSince("yesterday", t0); return err }, `invalid --since "yesterday"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"10m", t0.Add(-10 * time.Minute)},
		{"1h30m", t0.Add(-90 * time.Minute)},
		{"2026-03-01T11:00:00Z", t0.Add(-time.Hour)},
		{"2026-03-01T11:00:00.5+00:00", t0.Add(-time.Hour + 500*time.Millisecond)},
		{"1772362800", t0.Add(-time.Hour)},
		{"1772362800.25", t0.Add(-time.Hour + 250*time.Millisecond)},
	} {
		got, err := parseSince(tc.in, t0)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
