// Package metrics is the node's Prometheus instrumentation: the instruments the
// daemon's parts feed through plain function hooks, and collectors that read the
// live state at scrape time. It is the one package of swarmlet that imports the
// Prometheus client; the parts it measures know only funcs.
package metrics

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swarmlet/swarmlet/api"
)

// Sources are read at scrape time; any may be nil (a worker has no Raft state).
type Sources struct {
	// Raft is hashicorp/raft's Stats(): state, term, indexes, peers.
	Raft func() map[string]string
	// Tasks is every task in this manager's state.
	Tasks func() []*api.Task
	// Sessions is the count of worker sessions the leader serves now.
	Sessions func() int
	// Members counts gossip members by state (alive, dead, left).
	Members func() map[string]int
}

// Metrics holds one daemon's registry and the instruments its parts feed.
type Metrics struct {
	reg *prometheus.Registry

	leaderChanges prometheus.Counter
	commit        *prometheus.HistogramVec
	apply         *prometheus.HistogramVec
	entryBytes    *prometheus.CounterVec
	snapBytes     prometheus.Gauge
	snapTime      prometheus.Histogram
	sessAnswers   *prometheus.CounterVec
	sessBytes     *prometheus.CounterVec
	passes        *prometheus.CounterVec
	passTime      *prometheus.HistogramVec
	ops           *prometheus.CounterVec
	requests      *prometheus.HistogramVec
	dnsQueries    *prometheus.CounterVec
	dnsAnswers    *prometheus.CounterVec
	lbSync        prometheus.Histogram
	lbErrors      prometheus.Counter
	lbBackends    *prometheus.GaugeVec
	lbFrontends   prometheus.Gauge
}

// latency buckets from 100 µs to 10 s: Raft commits on a LAN take a few ms,
// blocking queries and log streams up to the wait.
var buckets = prometheus.ExponentialBucketsRange(0.0001, 10, 16)

// New makes the instruments and registers them, the collectors over src, and the
// Go runtime's and the process's own.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmlet_raft_leader_changes_total",
		Help: "Leader changes this manager observed."})
	m.commit = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "swarmlet_raft_commit_duration_seconds",
		Help: "From proposing a command to its being committed and applied here (the proposer's wait), by command.", Buckets: buckets}, []string{"command"})
	m.apply = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "swarmlet_raft_apply_duration_seconds",
		Help: "Time one committed entry takes in the state machine, by command.", Buckets: buckets}, []string{"command"})
	m.entryBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_raft_apply_bytes_total",
		Help: "Bytes of the committed entries applied here (as logged, before sealing), by command."}, []string{"command"})
	m.snapBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "swarmlet_raft_snapshot_bytes",
		Help: "Size of this manager's last snapshot of the state (before sealing)."})
	m.snapTime = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "swarmlet_raft_snapshot_duration_seconds",
		Help: "Time to write a snapshot of the state.", Buckets: buckets})
	m.sessAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_session_answers_total",
		Help: "Worker session answers this leader sent, by kind: whole, delta, legacy (a worker that takes no deltas)."}, []string{"kind"})
	m.sessBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_session_bytes_total",
		Help: "Bytes of the worker session answers this leader sent (JSON, before TLS), by kind."}, []string{"kind"})
	m.passes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_control_loop_passes_total",
		Help: "Passes of the leader's control loops (loop: orchestrator, scheduler)."}, []string{"loop"})
	m.passTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "swarmlet_control_loop_pass_duration_seconds",
		Help: "Time of one control-loop pass, planning and commit.", Buckets: buckets}, []string{"loop"})
	m.ops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_control_loop_task_ops_total",
		Help: "Task changes the control loops proposed (loop, kind: create, assign, pending, desired, delete ...)."}, []string{"loop", "kind"})
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "swarmlet_api_request_duration_seconds",
		Help: "API requests by route pattern and status code (blocking queries and log streams last up to their wait).", Buckets: buckets}, []string{"route", "code"})
	m.dnsQueries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_dns_queries_total",
		Help: "DNS queries by question type."}, []string{"qtype"})
	m.dnsAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmlet_dns_answers_total",
		Help: "DNS answers by kind: answer, nodata, nxdomain, forwarded, or the error code."}, []string{"kind"})
	m.lbSync = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "swarmlet_lb_sync_duration_seconds",
		Help: "Time to program the load balancer with a new table.", Buckets: buckets})
	m.lbErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmlet_lb_sync_errors_total",
		Help: "Load-balancer programming that failed (retried with the next table)."})
	m.lbBackends = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "swarmlet_lb_backends",
		Help: "Backends behind each service's frontends on this node, as last programmed."}, []string{"service"})
	m.lbFrontends = prometheus.NewGauge(prometheus.GaugeOpts{Name: "swarmlet_lb_frontends",
		Help: "Frontends (VIP or published port, and protocol) programmed on this node."})
	m.reg.MustRegister(m.leaderChanges, m.commit, m.apply, m.entryBytes, m.snapBytes, m.snapTime, m.sessAnswers, m.sessBytes, m.passes, m.passTime, m.ops, m.requests,
		m.dnsQueries, m.dnsAnswers, m.lbSync, m.lbErrors, m.lbBackends, m.lbFrontends,
		&stateCollector{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// The hooks below are what the daemon hands its parts. A nil *Metrics records
// nothing, so parts built without metrics (tests) need no checks.

// LeaderChanged counts a leader change this manager saw.
func (m *Metrics) LeaderChanged() {
	if m != nil {
		m.leaderChanges.Inc()
	}
}

// Committed records a proposal's wait (raftstore's Hooks.Commit).
func (m *Metrics) Committed(command string, d time.Duration) {
	if m != nil {
		m.commit.WithLabelValues(command).Observe(d.Seconds())
	}
}

// Applied records one entry through the FSM (raftstore's Hooks.Apply).
func (m *Metrics) Applied(command string, d time.Duration) {
	if m != nil {
		m.apply.WithLabelValues(command).Observe(d.Seconds())
	}
}

// Entry counts the bytes of one applied entry (raftstore's Hooks.Entry).
func (m *Metrics) Entry(command string, n int) {
	if m != nil {
		m.entryBytes.WithLabelValues(command).Add(float64(n))
	}
}

// Snapshotted records one snapshot written (raftstore's Hooks.Snapshot).
func (m *Metrics) Snapshotted(n int64, d time.Duration) {
	if m != nil {
		m.snapBytes.Set(float64(n))
		m.snapTime.Observe(d.Seconds())
	}
}

// Session counts one session answer (httpapi's ObserveSession).
func (m *Metrics) Session(kind string, n int) {
	if m != nil {
		m.sessAnswers.WithLabelValues(kind).Inc()
		m.sessBytes.WithLabelValues(kind).Add(float64(n))
	}
}

// Pass records one control-loop pass and the ops it proposed.
func (m *Metrics) Pass(loop string, d time.Duration, ops []api.TaskOp) {
	if m == nil {
		return
	}
	m.passes.WithLabelValues(loop).Inc()
	m.passTime.WithLabelValues(loop).Observe(d.Seconds())
	for _, op := range ops {
		m.ops.WithLabelValues(loop, string(op.Kind)).Inc()
	}
}

// Request records one API request by its route pattern (never the raw path,
// whose IDs would make a series per object).
func (m *Metrics) Request(route string, code int, d time.Duration) {
	if m != nil {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
	}
}

// DNS records one query and the kind of its answer.
func (m *Metrics) DNS(qtype, kind string) {
	if m != nil {
		m.dnsQueries.WithLabelValues(qtype).Inc()
		m.dnsAnswers.WithLabelValues(kind).Inc()
	}
}

// LBSynced records one programming of the load balancer: how long it took and,
// if it worked, the backends per service and the frontends it now has.
func (m *Metrics) LBSynced(d time.Duration, err error, backends map[string]int, frontends int) {
	if m == nil {
		return
	}
	m.lbSync.Observe(d.Seconds())
	if err != nil {
		m.lbErrors.Inc()
		return
	}
	m.lbBackends.Reset()
	for svc, n := range backends {
		m.lbBackends.WithLabelValues(svc).Set(float64(n))
	}
	m.lbFrontends.Set(float64(frontends))
}

// stateCollector reads the live state at scrape time: Raft's, the tasks', the
// sessions' and gossip's. Nothing is kept between scrapes, so a removed service
// leaves no stale series.
type stateCollector struct{ src Sources }

var (
	descRaftState   = prometheus.NewDesc("swarmlet_raft_state", "1 for this manager's Raft state (leader, follower, candidate, shutdown).", []string{"state"}, nil)
	descRaftTerm    = prometheus.NewDesc("swarmlet_raft_term", "Current Raft term.", nil, nil)
	descRaftIndex   = prometheus.NewDesc("swarmlet_raft_index", "Raft log indexes (kind: last_log, commit, applied, snapshot).", []string{"kind"}, nil)
	descRaftPeers   = prometheus.NewDesc("swarmlet_raft_peers", "Other voters in this manager's Raft configuration.", nil, nil)
	descRaftContact = prometheus.NewDesc("swarmlet_raft_last_contact_seconds", "Since this follower last heard from the leader (0 on the leader).", nil, nil)
	descTasks       = prometheus.NewDesc("swarmlet_tasks", "Tasks by service, observed state and desired state.", []string{"service", "state", "desired"}, nil)
	descPending     = prometheus.NewDesc("swarmlet_tasks_pending", "Tasks the scheduler cannot place, by the most common refusal.", []string{"reason"}, nil)
	descSessions    = prometheus.NewDesc("swarmlet_sessions", "Worker sessions the leader serves now (0 on other nodes).", nil, nil)
	descMembers     = prometheus.NewDesc("swarmlet_gossip_members", "Gossip members by state.", []string{"state"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftTerm, descRaftIndex, descRaftPeers, descRaftContact, descTasks, descPending, descSessions, descMembers} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.src.Raft != nil {
		if st := c.src.Raft(); st != nil {
			collectRaft(st, gauge)
		}
	}
	if c.src.Tasks != nil {
		type key struct{ svc, state, desired string }
		counts := map[key]int{}
		pending := map[string]int{}
		for _, t := range c.src.Tasks() {
			counts[key{t.ServiceName, t.Status.State.String(), t.DesiredState.String()}]++
			if t.Status.State == api.TaskPending && t.DesiredState <= api.TaskRunning {
				pending[PendingKind(t.PendingReason)]++
			}
		}
		for k, n := range counts {
			gauge(descTasks, float64(n), k.svc, k.state, k.desired)
		}
		for r, n := range pending {
			gauge(descPending, float64(n), r)
		}
	}
	if c.src.Sessions != nil {
		gauge(descSessions, float64(c.src.Sessions()))
	}
	if c.src.Members != nil {
		m := c.src.Members()
		states := make([]string, 0, len(m))
		for s := range m {
			states = append(states, s)
		}
		sort.Strings(states)
		for _, s := range states {
			gauge(descMembers, float64(m[s]), s)
		}
	}
}

// collectRaft reads hashicorp/raft's Stats.
func collectRaft(st map[string]string, gauge func(*prometheus.Desc, float64, ...string)) {
	cur := strings.ToLower(st["state"])
	for _, s := range []string{"leader", "follower", "candidate", "shutdown"} {
		v := 0.0
		if s == cur {
			v = 1
		}
		gauge(descRaftState, v, s)
	}
	num := func(k string) float64 { f, _ := strconv.ParseFloat(st[k], 64); return f }
	gauge(descRaftTerm, num("term"))
	for kind, key := range map[string]string{"last_log": "last_log_index", "commit": "commit_index", "applied": "applied_index", "snapshot": "last_snapshot_index"} {
		gauge(descRaftIndex, num(key), kind)
	}
	gauge(descRaftPeers, num("num_peers"))
	contact := 0.0
	if d, err := time.ParseDuration(st["last_contact"]); err == nil {
		contact = d.Seconds()
	}
	gauge(descRaftContact, contact)
}

// PendingKind reduces the scheduler's explanation ("no suitable node (3 nodes:
// 2 insufficient memory on n1, n2; 1 drained on n3)") to its most common refusal
// ("insufficient memory"), a label with few values: the nodes it names are left
// out.
func PendingKind(reason string) string {
	_, detail, ok := strings.Cut(reason, "(")
	if !ok {
		if reason == "" {
			return "unknown"
		}
		return reason
	}
	detail = strings.TrimSuffix(detail, ")")
	if _, after, ok := strings.Cut(detail, ": "); ok {
		detail = after
	}
	first, _, _ := strings.Cut(detail, "; ")
	if i := strings.LastIndex(first, " on "); i >= 0 {
		first = first[:i]
	}
	first, _, _ = strings.Cut(first, ", ") // the form before nodes were named
	if n, rest, ok := strings.Cut(first, " "); ok {
		if _, err := strconv.Atoi(n); err == nil {
			return rest
		}
	}
	return first
}
