package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/bench/hollow"
	"github.com/swarmlet/swarmlet/node/client"
)

// BenchmarkScale runs the scale scenario at each cluster size of SCALE_NODES
// (default 10,100,1000): three real managers (the built binary, drained), N hollow
// nodes in this process (bench/hollow), and 20 services of N replicas each (20,000
// tasks at 1,000 nodes). Steps: join all; create the services; scale one by +10
// and back; scale one by +N/2 and kill the leader at once; drain N/10 nodes; lose
// N/20 nodes at once. Each step reports its time to converge (every task RUNNING
// as the leader's state says, which is what workers reported through Raft), the
// managers' CPU and peak RSS, Raft entries and bytes per second, API latencies
// while it ran, and the bytes the managers sent the workers. SCALE_OUT names a
// file for the markdown table (make bench-scale writes bench/SCALE.md).
//
//	make bench-scale
//	SCALE_NODES=100 go test ./bench -run '^$' -bench Scale -benchtime 1x -timeout 60m -v
func BenchmarkScale(b *testing.B) {
	sizes := []int{10, 100, 1000}
	if s := os.Getenv("SCALE_NODES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 1000 {
				b.Fatalf("SCALE_NODES: %q: want sizes from 1 to 1000", f)
			}
			sizes = append(sizes, n)
		}
	}
	var runs []*run
	for k, n := range sizes {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			r := scaleRun(b, k+1, n)
			runs = append(runs, r)
			b.Log("\n" + render([]*run{r}))
		})
	}
	table := render(runs)
	b.Log("\n" + table)
	if out := os.Getenv("SCALE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// run is one cluster size's results.
type run struct {
	nodes, tasks int
	steps        []*step
	snapBytes    float64
	snapSeconds  float64
	rssEnd       int64
	notes        []string
}

// step is one measured change.
type step struct {
	name      string
	converged bool
	took      time.Duration // to converge (or to the deadline)
	wall      time.Duration // converge plus settling (what rates are over)
	leaderCPU time.Duration
	otherCPU  time.Duration // the busier follower
	peakRSS   int64
	entries   float64
	bytes     float64
	toWorkers int64
	lat       map[string][]time.Duration
	extra     map[string]string
}

const servicesPerRun = 20

func scaleRun(b *testing.B, sub, n int) *run {
	env := []string{"SWARMLET_RAFT_SNAPSHOT_THRESHOLD=32", "SWARMLET_RAFT_SNAPSHOT_INTERVAL=20s"}
	gmode := hollow.GossipMode(os.Getenv("SCALE_GOSSIP"))
	if gmode == "" {
		gmode = hollow.GossipOff
	}
	if gmode == hollow.GossipOff {
		// Memberlist is the limit of hollow nodes on one small machine (see
		// README.md): the managers take sessions for liveness instead.
		env = append(env, "SWARMLET_LIVENESS=session")
	}
	if v := os.Getenv("SCALE_MANAGER_ENV"); v != "" {
		env = append(env, strings.Fields(v)...)
	}
	ms := newManagers(b, sub, env)
	ms.start(1, "")
	ctx := context.Background()
	toks, err := ms.client(1).JoinTokens(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ms.start(2, toks.Manager)
	ms.start(3, toks.Manager)
	fleet := hollow.New(hollow.Config{Join: ms.apiAddr(1), Token: toks.Worker, Nodes: n, Gossip: gmode})
	b.Cleanup(fleet.Close)
	r := &run{nodes: n, tasks: servicesPerRun * n}
	ms.waitFor(b, 30*time.Second, "3 managers ready", func(c *client.Client) bool {
		ns, _, err := c.Nodes(ctx)
		return err == nil && countReady(ns) == 3
	})
	names := make([]string, servicesPerRun)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", i+1)
	}
	deadline := 60*time.Second + time.Duration(n)*120*time.Millisecond

	// Join all.
	r.add(ms.measure(b, fleet, "join", deadline, func() {
		if err := fleet.Start(ctx, 0, n); err != nil {
			b.Fatal(err)
		}
	}, func(c *client.Client) bool {
		ns, _, err := c.Nodes(ctx)
		return err == nil && countReady(ns) == n+3
	}))
	js := fleet.Stats().JoinTook
	r.steps[0].extra["join exchange p50/p99"] = pct(js, 50) + " / " + pct(js, 99)

	// Create the services.
	want := map[string]int{}
	for _, s := range names {
		want[s] = n
	}
	r.add(ms.measure(b, fleet, "create", deadline, func() {
		for _, s := range names {
			ms.retry(b, "create "+s, func(c *client.Client) error {
				_, err := c.CreateService(ctx, api.ServiceSpec{Name: s, Image: "hollow/app", Replicas: uint64(n), Ports: []api.PortConfig{{TargetPort: 80}}})
				if errors.Is(err, api.ErrConflict) {
					return nil // an earlier try that seemed to fail did create it
				}
				return err
			})
		}
	}, runningIs(want)))
	r.rssEnd = ms.stat(ms.leader()).rss

	// Scale by +10 and back: what one small change costs.
	for _, d := range []int{10, -10} {
		want["s01"] = n + d
		if d < 0 {
			want["s01"] = n
		}
		r.add(ms.measure(b, fleet, fmt.Sprintf("scale %+d", d), deadline, func() {
			ms.retry(b, "scale s01", func(c *client.Client) error { _, err := c.ScaleService(ctx, "s01", uint64(want["s01"])); return err })
		}, runningIs(want)))
	}

	// Kill the leader while a scale-up is under way.
	before := runningTasks(b, ms.any(), "s02")
	var killed int
	var writeAfter atomic.Int64
	want["s02"] = n + n/2
	st := ms.measure(b, fleet, "leader killed", deadline, func() {
		ms.retry(b, "scale s02", func(c *client.Client) error { _, err := c.ScaleService(ctx, "s02", uint64(want["s02"])); return err })
		killed = ms.leader()
		t0 := time.Now()
		ms.kill(killed)
		target := fleet.Nodes()[0].ID
		for k := 0; ; k++ {
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := ms.any().UpdateNode(wctx, target, api.NodeUpdateRequest{LabelAdd: map[string]string{"failover": strconv.Itoa(k)}})
			cancel()
			if err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		writeAfter.Store(int64(time.Since(t0)))
	}, runningIs(want))
	after := runningTasks(b, ms.any(), "s02")
	moved := 0
	for id, node := range before {
		if after[id] != node {
			moved++
		}
	}
	st.extra["first write after kill"] = time.Duration(writeAfter.Load()).Round(time.Millisecond).String()
	st.extra["tasks moved"] = fmt.Sprintf("%d of %d", moved, len(before))
	r.add(st)
	ms.start(killed, toks.Manager)
	want["s02"] = n
	ms.retry(b, "scale s02 back", func(c *client.Client) error { _, err := c.ScaleService(ctx, "s02", uint64(n)); return err })
	ms.waitFor(b, deadline, "s02 back to N", func(c *client.Client) bool { return runningIs(want)(c) })

	// Drain N/10 nodes.
	nodes := fleet.Nodes()
	drain := nodes[:max(1, n/10)]
	r.add(ms.measure(b, fleet, "drain N/10", deadline, func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, nd := range drain {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				ms.retry(b, "drain", func(c *client.Client) error {
					_, err := c.UpdateNode(ctx, nd.ID, api.NodeUpdateRequest{Availability: api.AvailabilityDrain})
					return err
				})
			}()
		}
		wg.Wait()
	}, func(c *client.Client) bool {
		return runningIs(want)(c) && noneMeantToRun(c, drain)
	}))

	// Lose N/20 nodes at once.
	lose := nodes[len(nodes)-max(1, n/20):]
	r.add(ms.measure(b, fleet, "lose N/20", deadline, func() {
		fleet.Kill(lose...)
	}, func(c *client.Client) bool {
		ns, _, err := c.Nodes(ctx)
		if err != nil {
			return false
		}
		down := map[string]bool{}
		for _, x := range ns {
			if x.Status == api.NodeDown {
				down[x.ID] = true
			}
		}
		for _, nd := range lose {
			if !down[nd.ID] {
				return false
			}
		}
		return runningIs(want)(c) && noneMeantToRun(c, lose)
	}))

	for _, i := range ms.alive() {
		mt := ms.metrics(i)
		r.snapBytes = max(r.snapBytes, mt["swarmlet_raft_snapshot_bytes"])
		if c := mt["swarmlet_raft_snapshot_duration_seconds_count"]; c > 0 {
			r.snapSeconds = max(r.snapSeconds, mt["swarmlet_raft_snapshot_duration_seconds_sum"]/c)
		}
	}
	for _, s := range r.steps {
		b.Logf("%s: converged %v in %s", s.name, s.converged, s.took.Round(time.Millisecond))
	}
	return r
}

func (r *run) add(s *step) { r.steps = append(r.steps, s) }

// any is a client of the first manager running.
func (m *managers) any() *client.Client {
	a := m.alive()
	if len(a) == 0 {
		m.tb.Fatal("no manager running")
	}
	return m.client(a[0])
}

// retry repeats a write until a manager accepts it: an overloaded cluster may
// lose a leader, and the operator would try again.
func (m *managers) retry(tb testing.TB, what string, fn func(*client.Client) error) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := fn(m.any())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (m *managers) waitFor(tb testing.TB, within time.Duration, what string, ok func(*client.Client) bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !ok(m.any()) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measure runs act, waits (at most within) until done, then until the workers'
// traffic has settled, and reports what the step cost.
func (m *managers) measure(tb testing.TB, fleet *hollow.Fleet, name string, within time.Duration, act func(), done func(*client.Client) bool) *step {
	s := &step{name: name, lat: map[string][]time.Duration{}, extra: map[string]string{}}
	cpu0 := map[int]time.Duration{}
	for i := 1; i <= 3; i++ {
		cpu0[i] = m.stat(i).cpu
	}
	lead0 := m.leader()
	mt0 := m.metrics(lead0)
	in0 := fleet.Stats().BytesIn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak atomic.Int64
	wg.Add(2)
	go func() { // peak RSS
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for i := 1; i <= 3; i++ {
				if r := m.stat(i).rss; r > peak.Load() {
					peak.Store(r)
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var latMu sync.Mutex
	go func() { // the operator's view while it runs
		defer wg.Done()
		calls := []struct {
			name string
			fn   func(ctx context.Context, c *client.Client) error
		}{
			{"service ls", func(ctx context.Context, c *client.Client) error { _, _, err := c.Services(ctx); return err }},
			{"service ps s01", func(ctx context.Context, c *client.Client) error { _, _, err := c.Tasks(ctx, "s01", 0, 0); return err }},
			{"node ls", func(ctx context.Context, c *client.Client) error { _, _, err := c.Nodes(ctx); return err }},
		}
		for {
			for _, call := range calls {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				err := call.fn(ctx, m.any())
				cancel()
				if err == nil || !strings.Contains(err.Error(), "not found") {
					latMu.Lock()
					s.lat[call.name] = append(s.lat[call.name], time.Since(t0))
					latMu.Unlock()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	t0 := time.Now()
	act()
	deadline := t0.Add(within)
	for {
		if done(m.any()) {
			s.converged = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.took = time.Since(t0)
	// Settle: the endpoint tables reach every node after the tasks run.
	for quiet, last := 0, fleet.Stats().BytesIn; quiet < 4 && time.Since(t0) < within+30*time.Second; {
		time.Sleep(250 * time.Millisecond)
		cur := fleet.Stats().BytesIn
		if cur-last < 2048 {
			quiet++
		} else {
			quiet = 0
		}
		last = cur
	}
	s.wall = time.Since(t0)
	close(stop)
	wg.Wait()
	s.toWorkers = fleet.Stats().BytesIn - in0
	s.peakRSS = peak.Load()
	lead := m.leader()
	for i := 1; i <= 3; i++ {
		d := m.stat(i).cpu - cpu0[i]
		if m.stat(i).cpu == 0 {
			d = 0
		}
		if i == lead {
			s.leaderCPU = d
		} else {
			s.otherCPU = max(s.otherCPU, d)
		}
	}
	if lead == lead0 && mt0 != nil {
		mt := m.metrics(lead)
		s.entries = sumPrefix(mt, "swarmlet_raft_apply_duration_seconds_count") - sumPrefix(mt0, "swarmlet_raft_apply_duration_seconds_count")
		s.bytes = sumPrefix(mt, "swarmlet_raft_apply_bytes_total") - sumPrefix(mt0, "swarmlet_raft_apply_bytes_total")
	} else if mt := m.metrics(lead); mt != nil {
		// A new leader: what it applied during the step is all it has.
		s.extra["raft counted from"] = "the new leader's start"
		s.entries = sumPrefix(mt, "swarmlet_raft_apply_duration_seconds_count")
		s.bytes = sumPrefix(mt, "swarmlet_raft_apply_bytes_total")
	}
	tb.Logf("%s: converged=%v took=%s leaderCPU=%s toWorkers=%d", name, s.converged, s.took.Round(time.Millisecond), s.leaderCPU, s.toWorkers)
	return s
}

func countReady(ns []api.NodeInfo) int {
	k := 0
	for _, n := range ns {
		if n.Status == api.NodeReady {
			k++
		}
	}
	return k
}

// runningIs: every service in want runs exactly that many tasks, as the
// leader's state says.
func runningIs(want map[string]int) func(*client.Client) bool {
	w := map[string]int{}
	for k, v := range want {
		w[k] = v
	}
	return func(c *client.Client) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svcs, err := services(ctx, c)
		if err != nil {
			return false
		}
		for name, n := range w {
			if svcs[name].Running != n {
				return false
			}
		}
		return true
	}
}

// noneMeantToRun: no task on these nodes is meant to run any more.
func noneMeantToRun(c *client.Client, nodes []*hollow.Node) bool {
	for _, nd := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ts, _, err := c.AllTasks(ctx, nd.ID, 0, 0)
		cancel()
		if err != nil {
			return false
		}
		for _, t := range ts {
			if t.DesiredState <= api.TaskRunning && !t.Status.State.Terminal() {
				return false
			}
		}
	}
	return true
}

// runningTasks: task ID -> node of every running task of the services other
// than skip.
func runningTasks(tb testing.TB, c *client.Client, skip string) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts, _, err := c.AllTasks(ctx, "", 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for _, t := range ts {
		if t.ServiceName != skip && t.Status.State == api.TaskRunning && t.DesiredState == api.TaskRunning {
			out[t.ID] = t.NodeID
		}
	}
	return out
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := (len(s)*p + 99) / 100
	k = min(max(k-1, 0), len(s)-1)
	return fmtDur(s[k])
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

func fmtBytes(n float64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GB", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}

// render is the markdown table: one row per step and figure, one column per size.
func render(runs []*run) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "| step | figure |")
	for _, r := range runs {
		fmt.Fprintf(&sb, " %d nodes / %d tasks |", r.nodes, r.tasks)
	}
	sb.WriteString("\n|---|---|")
	for range runs {
		sb.WriteString("---|")
	}
	sb.WriteString("\n")
	if len(runs) == 0 {
		return sb.String()
	}
	row := func(stepName, figure string, cell func(r *run, s *step) string) {
		fmt.Fprintf(&sb, "| %s | %s |", stepName, figure)
		for _, r := range runs {
			var s *step
			for _, x := range r.steps {
				if x.name == stepName {
					s = x
				}
			}
			if s == nil {
				sb.WriteString(" - |")
				continue
			}
			fmt.Fprintf(&sb, " %s |", cell(r, s))
		}
		sb.WriteString("\n")
	}
	for _, s0 := range runs[len(runs)-1].steps {
		name := s0.name
		row(name, "converged in", func(_ *run, s *step) string {
			if !s.converged {
				return "not in " + fmtDur(s.took)
			}
			return fmtDur(s.took)
		})
		row(name, "CPU leader / busier follower", func(_ *run, s *step) string {
			return fmt.Sprintf("%.1f s / %.1f s", s.leaderCPU.Seconds(), s.otherCPU.Seconds())
		})
		row(name, "peak manager RSS", func(_ *run, s *step) string { return fmtBytes(float64(s.peakRSS)) })
		row(name, "Raft entries/s, bytes/s", func(_ *run, s *step) string {
			sec := s.wall.Seconds()
			return fmt.Sprintf("%.0f, %s", s.entries/sec, fmtBytes(s.bytes/sec))
		})
		row(name, "bytes to workers (all, per node)", func(r *run, s *step) string {
			return fmt.Sprintf("%s, %s", fmtBytes(float64(s.toWorkers)), fmtBytes(float64(s.toWorkers)/float64(r.nodes)))
		})
		for _, api := range []string{"service ls", "service ps s01", "node ls"} {
			row(name, api+" p50 / p99", func(_ *run, s *step) string {
				return pct(s.lat[api], 50) + " / " + pct(s.lat[api], 99)
			})
		}
		var extras []string
		for k := range s0.extra {
			extras = append(extras, k)
		}
		sort.Strings(extras)
		for _, k := range extras {
			row(name, k, func(_ *run, s *step) string {
				if v, ok := s.extra[k]; ok {
					return v
				}
				return "-"
			})
		}
	}
	fmt.Fprintf(&sb, "| end | snapshot size, mean write time |")
	for _, r := range runs {
		fmt.Fprintf(&sb, " %s, %s |", fmtBytes(r.snapBytes), fmtDur(time.Duration(r.snapSeconds*float64(time.Second))))
	}
	fmt.Fprintf(&sb, "\n| create | leader RSS after create |")
	for _, r := range runs {
		fmt.Fprintf(&sb, " %s |", fmtBytes(float64(r.rssEnd)))
	}
	sb.WriteString("\n")
	return sb.String()
}
