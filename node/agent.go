package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/dnsdisco"
	"github.com/swarmlet/swarmlet/lb"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/engine"
	"github.com/swarmlet/swarmlet/node/engine/docker"
	"github.com/swarmlet/swarmlet/node/engine/process"
	"github.com/swarmlet/swarmlet/node/worker"
	"github.com/swarmlet/swarmlet/raftstore"
)

// The per-node parts every node runs whatever its role: the engine and worker
// agent, the DNS server and the load balancer, all fed by the worker's session.

type nodeParts struct {
	engine   engine.Engine
	agent    *worker.Agent
	dns      *dnsdisco.Server
	balancer lb.Balancer

	lbMu   sync.Mutex
	lbLast string
}

// chooseEngine resolves --engine auto: Docker when its socket answers.
func (d *Daemon) chooseEngine(ctx context.Context) (string, error) {
	switch d.cfg.Engine {
	case "auto":
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if docker.Available(cctx) {
			return "docker", nil
		}
		return "process", nil
	default:
		return d.cfg.Engine, nil
	}
}

func (d *Daemon) startParts(ctx context.Context) error {
	kind := d.engineKind
	d.cfg.Out("engine: %s\n", kind)
	dnsAddr := ""
	if d.cfg.DNSPort > 0 {
		dnsAddr = net.JoinHostPort(d.cfg.AdvertiseAddr, strconv.Itoa(d.cfg.DNSPort))
	}
	ecfg := engine.Config{NodeID: d.id.NodeID, NodeAddr: d.cfg.AdvertiseAddr, DNS: dnsAddr, DataDir: filepath.Join(d.cfg.DataDir, "engine")}
	var (
		eng engine.Engine
		err error
	)
	switch kind {
	case "docker":
		eng, err = docker.New(ecfg, d.log.With("component", "engine"))
	default:
		eng, err = process.New(ecfg, d.log.With("component", "engine"))
	}
	if err != nil {
		return fmt.Errorf("start %s engine: %w", kind, err)
	}
	p := &nodeParts{engine: eng}
	d.parts = p
	if dnsAddr != "" {
		ups := d.cfg.DNSUpstreams
		if len(ups) == 0 {
			ups, _ = dnsdisco.UpstreamsFromResolvConf("/etc/resolv.conf", dnsAddr)
		}
		p.dns = dnsdisco.New(dnsdisco.Config{Addr: dnsAddr, Upstreams: ups, Logger: d.log.With("component", "dns")})
		if err := p.dns.Start(); err != nil {
			return fmt.Errorf("start DNS on %s: %w (use --dns-port to pick another port)", dnsAddr, err)
		}
	}
	if d.cfg.LB != "none" {
		// Several nodes may share one host (and so one netfilter): each owns a table.
		bal, err := lb.New(d.cfg.LB, lb.Config{Logger: d.log, TableName: "swarmlet_" + d.id.NodeID})
		if err != nil {
			return fmt.Errorf("start load balancer: %w", err)
		}
		p.balancer = bal
		if bal.Name() == lb.KindNftables {
			if err := lb.EnableRouteLocalnet(); err != nil {
				d.log.Warn("route_localnet", "err", err)
			}
		}
		if bal.Name() != lb.KindUserspace {
			// The routing mesh forwards published-port traffic to tasks on
			// other nodes (the userspace proxy re-dials instead).
			if changed, err := lb.EnableIPForward(); err != nil {
				d.log.Warn("ip_forward: published ports will not reach tasks on other nodes", "err", err)
			} else if changed {
				d.log.Info("enabled net.ipv4.ip_forward for the routing mesh")
			}
		}
	}
	p.agent = worker.New(worker.Config{NodeID: d.id.NodeID, Engine: eng, Manager: d, Logger: d.log,
		OnAssignments: func(as api.Assignments) {
			d.applyTables(ctx, as)
			d.followRole(ctx, as)
		}})
	return nil
}

func (d *Daemon) stopParts() {
	p := d.parts
	if p == nil {
		return
	}
	if p.dns != nil {
		_ = p.dns.Close()
	}
	if p.balancer != nil {
		// Kernel rules stay on a plain stop, so traffic to running tasks keeps
		// flowing across a daemon restart; 'leave' removes them.
		if d.left {
			_ = p.balancer.Close()
		}
	}
	_ = p.engine.Close()
}

// applyTables hands DNS and the load balancer the new endpoint table.
func (d *Daemon) applyTables(ctx context.Context, as api.Assignments) {
	p := d.parts
	if p.dns != nil {
		p.dns.SetTable(dnsTable(as))
	}
	if p.balancer != nil {
		t := lbTable(as, d.cfg.AdvertiseAddr)
		key := fmt.Sprint(t)
		p.lbMu.Lock()
		defer p.lbMu.Unlock()
		if key == p.lbLast {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := p.balancer.Sync(sctx, t); err != nil {
			// Not recorded as applied: the next assignments retry it even if
			// the table is the same (Sync is idempotent).
			d.log.Warn("lb sync", "err", err)
			return
		}
		p.lbLast = key
	}
}

func dnsTable(as api.Assignments) dnsdisco.Table {
	t := dnsdisco.Table{Services: map[string]dnsdisco.Service{}, Nodes: map[string]net.IP{}}
	for _, n := range as.Nodes {
		t.Nodes[n.ID] = net.ParseIP(n.Addr)
	}
	for _, se := range as.Endpoints {
		s := dnsdisco.Service{}
		if se.EndpointMode == api.EndpointVIP && se.VIP != "" {
			s.VIP = net.ParseIP(se.VIP)
		}
		for _, e := range se.Tasks {
			task := dnsdisco.Task{Addr: net.ParseIP(e.Addr), Node: e.NodeID}
			if task.Addr == nil {
				task.Addr = net.ParseIP(e.NodeIP)
			}
			for _, pb := range e.Ports {
				task.Ports = append(task.Ports, dnsdisco.Port{Proto: pb.Protocol, Target: pb.TargetPort, HostPort: pb.HostPort})
			}
			s.Tasks = append(s.Tasks, task)
		}
		t.Services[strings.ToLower(se.Service)] = s
	}
	return t
}

// lbTable maps VIP:target and every ingress-published port on this node's address
// to the tasks' reachable host ports.
func lbTable(as api.Assignments, nodeAddr string) lb.Table {
	var t lb.Table
	for _, se := range as.Endpoints {
		for _, pc := range se.Ports {
			var backends []lb.Backend
			for _, e := range se.Tasks {
				for _, pb := range e.Ports {
					if pb.TargetPort == pc.TargetPort && pb.Protocol == pc.Protocol && pb.HostPort > 0 {
						backends = append(backends, lb.Backend{IP: net.ParseIP(e.NodeIP), Port: pb.HostPort})
					}
				}
			}
			if se.EndpointMode == api.EndpointVIP && se.VIP != "" {
				t.Frontends = append(t.Frontends, lb.Frontend{Service: se.Service, IP: net.ParseIP(se.VIP), Port: pc.TargetPort, Proto: pc.Protocol, Backends: backends})
			}
			if pc.PublishMode == api.PublishIngress && pc.PublishedPort > 0 {
				t.Frontends = append(t.Frontends, lb.Frontend{Service: se.Service, IP: net.ParseIP(nodeAddr), Port: pc.PublishedPort, Proto: pc.Protocol, Backends: backends})
			}
		}
	}
	return t
}

// Assignments implements worker.Manager. The session is with the leader, whose
// state is current: the leader serves itself in process, every other node asks it
// through the API (a worker through any manager, which forwards).
func (d *Daemon) Assignments(ctx context.Context, nodeID string, index uint64, wait time.Duration) (api.Assignments, error) {
	d.mu.Lock()
	st := d.store
	d.mu.Unlock()
	if st != nil && st.IsLeader() && d.waitReady(ctx, st) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("/?node=%s&index=%d&wait=%s", nodeID, index, wait), nil)
		rec := &memResponse{header: http.Header{}}
		d.handleAssignments(rec, req)
		if rec.code == http.StatusNotFound {
			return api.Assignments{}, worker.ErrNodeRemoved
		}
		if rec.code >= 300 {
			return api.Assignments{}, fmt.Errorf("assignments: %s", strings.TrimSpace(rec.body.String()))
		}
		var as api.Assignments
		if err := decodeJSON(&rec.body, &as); err != nil {
			return api.Assignments{}, err
		}
		return as, nil
	}
	targets := d.leaderClients(st)
	if st != nil && len(targets) == 0 {
		return api.Assignments{}, d.noQuorumError()
	}
	var last error = errors.New("no manager known")
	for _, c := range targets {
		as, err := c.Assignments(ctx, nodeID, index, wait)
		if err == nil {
			return as, nil
		}
		if client.IsKind(err, api.ErrKindNotFound) {
			return as, worker.ErrNodeRemoved
		}
		last = err
	}
	return api.Assignments{}, last
}

// ReportStatus implements worker.Manager.
func (d *Daemon) ReportStatus(ctx context.Context, rep api.StatusReport) error {
	return d.writeToLeader(ctx, &raftstore.TaskOps{Ops: rep.Ops})
}

// leave stops this node's tasks and removes it from the cluster, then forgets the
// cluster so the data dir can init or join afresh.
func (d *Daemon) leave(ctx context.Context) error {
	if p := d.parts; p != nil {
		if err := p.agent.StopAll(ctx); err != nil {
			return fmt.Errorf("stop tasks: %w", err)
		}
	}
	if err := d.writeToLeader(ctx, &raftstore.NodeRemove{NodeID: d.id.NodeID, Force: true}); err != nil {
		d.log.Warn("remove self from cluster", "err", err)
	}
	d.left = true
	return nil
}

// forgetCluster runs after a leave, once everything is stopped.
func (d *Daemon) forgetCluster() {
	_ = os.RemoveAll(d.raftDir())
	_ = os.Remove(identityPath(d.cfg.DataDir))
}

func (d *Daemon) handleLocalLogs(w http.ResponseWriter, r *http.Request) {
	if d.parts == nil {
		writeError(w, fmt.Errorf("no engine on this node: %w", errBadRequest))
		return
	}
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	w.Header().Set("Content-Type", "text/plain")
	fw := flushWriter{w: w}
	if err := d.parts.agent.Logs(r.Context(), r.PathValue("id"), follow, tail, fw); err != nil {
		writeError(w, fmt.Errorf("logs of task %s: %w", r.PathValue("id"), err))
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// handleServiceLogs gathers the logs of a service's tasks from the nodes that run
// them, each line prefixed with the task's name, as docker service logs does.
func (d *Daemon) handleServiceLogs(w http.ResponseWriter, r *http.Request) {
	snap := d.store.Snapshot()
	s := snap.Service(r.PathValue("name"))
	if s == nil {
		writeError(w, fmt.Errorf("service %q: %w", r.PathValue("name"), raftstore.ErrNotFound))
		return
	}
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	w.Header().Set("Content-Type", "text/plain")
	var mu sync.Mutex
	out := flushWriter{w: w}
	var wg sync.WaitGroup
	for _, t := range snap.TasksByService(s.ID) {
		n := snap.Node(t.NodeID)
		if n == nil || t.Status.State < api.TaskStarting {
			continue
		}
		prefix := fmt.Sprintf("%s.%d.%s@%s | ", s.Spec.Name, t.Slot, t.ID, n.Hostname)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw := &linePrefixer{prefix: prefix, mu: &mu, w: out}
			_ = d.peer(APIAddr(n)).TaskLogs(r.Context(), t.ID, follow, tail, lw)
			lw.flush()
		}()
	}
	wg.Wait()
}

// linePrefixer writes whole lines with a prefix, so concurrent streams interleave by line.
type linePrefixer struct {
	prefix string
	mu     *sync.Mutex
	w      io.Writer
	buf    []byte
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.mu.Lock()
		_, err := io.WriteString(l.w, l.prefix+string(l.buf[:i+1]))
		l.mu.Unlock()
		l.buf = l.buf[i+1:]
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (l *linePrefixer) flush() {
	if len(l.buf) > 0 {
		_, _ = l.Write([]byte("\n"))
	}
}

// storeAdapter lets the dispatcher's loops use the Raft store through the small
// interface they declare.
type storeAdapter struct{ s *raftstore.Store }

func (a storeAdapter) Snapshot() dispatcher.Snapshot { return a.s.Snapshot() }
func (a storeAdapter) Watch() <-chan struct{}        { return a.s.Watch() }
func (a storeAdapter) ApplyTaskOps(ctx context.Context, ops []api.TaskOp) error {
	return a.s.ApplyTaskOps(ctx, ops)
}

func (d *Daemon) dispatcherTasks() []LeaderTask {
	return []LeaderTask{
		func(ctx context.Context, st *raftstore.Store) {
			o := dispatcher.NewOrchestrator(storeAdapter{st}, d.log.With("component", "orchestrator"), time.Now)
			if err := o.Run(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("orchestrator stopped", "err", err)
			}
		},
		func(ctx context.Context, st *raftstore.Store) {
			s := dispatcher.NewScheduler(storeAdapter{st}, d.log.With("component", "scheduler"), time.Now)
			if err := s.Run(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("scheduler stopped", "err", err)
			}
		},
	}
}
