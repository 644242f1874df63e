package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics GETs a node's /metrics over its TCP API and parses the text format.
// scrapeMetrics reads a node's /metrics through its socket (the TCP API answers
// only mutual TLS).
func scrapeMetrics(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	addr := sock
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", strings.TrimPrefix(sock, "unix://"))
	}}}
	resp, err := hc.Get("http://swarmlet/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape %s: %s, %s", addr, resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", addr, err)
	}
	return fams
}

// sample is the value of name's series whose labels include want (histograms:
// their count), and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	total := 0.0
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if got[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// TestMetricsDuringScale scrapes both nodes of a real cluster around a scale and
// checks that the numbers move as the cluster does.
func TestMetricsDuringScale(t *testing.T) {
	c := newCluster(t, opsNet)
	dnsAddr := func(i int) string { return fmt.Sprintf("%s:24253", c.ip(i)) }
	c.start(1, "", "--dns-port", "24253")
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")), "--dns-port", "24253")
	waitFor(t, 10*time.Second, "2 nodes", func() bool {
		ns, err := c.nodes(1)
		return err == nil && len(ns) == 2
	})
	leader, worker := c.sock(1), c.sock(2)
	// dnsrr: loopback nodes do not program the host (--cluster-network auto), so
	// the userspace balancer cannot bind a VIP of the service range here.
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "2", "-p", "80", "--endpoint-mode", "dnsrr", whoamiBin)

	before := scrapeMetrics(t, leader)
	running := func(f map[string]*dto.MetricFamily) float64 {
		return sample(f, "swarmlet_tasks", "service", "web", "state", "running", "desired", "running")
	}
	if got := running(before); got != 2 {
		t.Fatalf("before the scale: %v running tasks in swarmlet_tasks", got)
	}
	if sample(before, "swarmlet_raft_state", "state", "leader") != 1 || sample(before, "swarmlet_sessions") != 2 {
		t.Fatalf("leader: raft_state{leader}=%v sessions=%v", sample(before, "swarmlet_raft_state", "state", "leader"), sample(before, "swarmlet_sessions"))
	}

	c.mustCLI(1, "service", "scale", "web=6")
	// Each node's DNS answers the service's name; a name outside the zone counts
	// as forwarded (or failed) without leaving the machine's resolver config.
	for i := 1; i <= 2; i++ {
		m := new(dns.Msg)
		m.SetQuestion("web.", dns.TypeA)
		if r, err := dns.Exchange(m, dnsAddr(i)); err != nil || len(r.Answer) == 0 {
			t.Fatalf("DNS on node %d: %v %v", i, r, err)
		}
		m.SetQuestion("nope.web.swarmlet.", dns.TypeSRV)
		if _, err := dns.Exchange(m, dnsAddr(i)); err != nil {
			t.Fatal(err)
		}
	}
	var after, wafter map[string]*dto.MetricFamily
	waitFor(t, 10*time.Second, "balancers programmed with 6 backends", func() bool {
		after, wafter = scrapeMetrics(t, leader), scrapeMetrics(t, worker)
		return sample(after, "swarmlet_lb_backends", "service", "web") == 6 && sample(wafter, "swarmlet_lb_backends", "service", "web") == 6
	})
	moved := []struct {
		name    string
		f       map[string]*dto.MetricFamily
		labels  []string
		atLeast float64
	}{
		{"swarmlet_tasks", after, []string{"service", "web", "state", "running", "desired", "running"}, 6},
		{"swarmlet_control_loop_task_ops_total", after, []string{"loop", "orchestrator", "kind", "create"}, 6},
		{"swarmlet_control_loop_task_ops_total", after, []string{"loop", "scheduler", "kind", "assign"}, 6},
		{"swarmlet_raft_commit_duration_seconds", after, []string{"command", "service-scale"}, 1},
		{"swarmlet_raft_apply_duration_seconds", after, []string{"command", "task-ops"}, 3},
		{"swarmlet_raft_leader_changes_total", after, nil, 1},
		{"swarmlet_api_request_duration_seconds", after, []string{"route", "POST /v1/services/{name}/scale", "code", "200"}, 1},
		{"swarmlet_api_request_duration_seconds", after, []string{"route", "GET /metrics", "code", "200"}, 1},
		{"swarmlet_gossip_members", after, []string{"state", "alive"}, 2},
		{"swarmlet_gossip_members", wafter, []string{"state", "alive"}, 2},
		{"swarmlet_dns_queries_total", wafter, []string{"qtype", "A"}, 1},
		{"swarmlet_dns_answers_total", wafter, []string{"kind", "answer"}, 1},
		{"swarmlet_dns_answers_total", wafter, []string{"kind", "nxdomain"}, 1},
		{"swarmlet_lb_sync_duration_seconds", wafter, nil, 2},
		// The manager's API served the scale.
		{"swarmlet_api_request_duration_seconds", after, []string{"route", "POST /v1/services/{name}/scale"}, 1},
	}
	for _, m := range moved {
		if got := sample(m.f, m.name, m.labels...); got < m.atLeast {
			t.Errorf("%s%v = %v, want >= %v", m.name, m.labels, got, m.atLeast)
		}
	}
	for _, name := range []string{"swarmlet_control_loop_passes_total", "swarmlet_raft_apply_duration_seconds"} {
		if b, a := sample(before, name), sample(after, name); a <= b {
			t.Errorf("%s did not move across the scale: %v -> %v", name, b, a)
		}
	}
	// A worker holds no Raft state and serves no sessions.
	if _, ok := wafter["swarmlet_raft_state"]; ok || sample(wafter, "swarmlet_sessions") != 0 {
		t.Errorf("worker reports Raft state or sessions")
	}
}
