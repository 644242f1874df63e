package scenarios

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"syscall"
	"time"
)

// Env is what a nemesis acts on.
type Env struct {
	C    *Cluster
	TL   *Timeline
	Rng  *rand.Rand
	Logf func(format string, args ...any)
}

// Nemesis injects one fault and returns the function that heals it. Both record
// themselves in the timeline.
type Nemesis struct {
	Name   string
	Inject func(ctx context.Context, e *Env) (heal func() error, err error)
}

func names(ns []*Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

func (e *Env) shuffled(ns []*Node) []*Node {
	out := append([]*Node(nil), ns...)
	e.Rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// leaderOr returns the current leader, or a random manager (saying so) when none
// can be found: a leader-targeted fault during an election still has to land.
func (e *Env) leaderOr(ctx context.Context) (*Node, string) {
	l, err := e.C.Leader(ctx)
	if err == nil {
		return l, "leader " + l.Name
	}
	ms := e.C.Managers()
	m := ms[e.Rng.Intn(len(ms))]
	return m, fmt.Sprintf("%s (no leader found: %v)", m.Name, err)
}

// partition cuts the links between groups of nodes (by address); ports limit the
// cut to one subsystem, lossPct makes it lossy instead of total.
func partition(kind string, ports []int, lossPct int, pick func(ctx context.Context, e *Env) ([][]*Node, string)) func(ctx context.Context, e *Env) (func() error, error) {
	return func(ctx context.Context, e *Env) (func() error, error) {
		groups, desc := pick(ctx, e)
		addrs := make([][]string, len(groups))
		var parts []string
		for i, g := range groups {
			for _, n := range g {
				addrs[i] = append(addrs[i], n.Addr)
			}
			parts = append(parts, strings.Join(names(g), " "))
		}
		rules := Components(addrs...).Rules(ports, lossPct)
		if err := e.C.ns.SetRules(rules); err != nil {
			return nil, err
		}
		// The first group is the one the fault is about (the isolated node...).
		f := e.TL.Begin(kind, desc+": "+strings.Join(parts, " | "), names(groups[0])...)
		return func() error {
			err := e.C.ns.SetRules(nil)
			e.TL.End(f)
			return err
		}, nil
	}
}

func isolate(n *Node, all []*Node) [][]*Node {
	var rest []*Node
	for _, x := range all {
		if x != n {
			rest = append(rest, x)
		}
	}
	return [][]*Node{{n}, rest}
}

// Partition nemeses.
var (
	IsolateOne = Nemesis{"isolate-one", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		n := e.C.Nodes[e.Rng.Intn(len(e.C.Nodes))]
		return isolate(n, e.C.Nodes), "isolate " + n.Name
	})}
	IsolateLeader = Nemesis{"isolate-leader", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		l, desc := e.leaderOr(ctx)
		return isolate(l, e.C.Nodes), "isolate " + desc
	})}
	// IsolateFollower cuts off a manager that is not the leader: the cluster goes
	// on without it, and it must catch up when healed.
	IsolateFollower = Nemesis{"isolate-follower", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		l, _ := e.C.Leader(ctx)
		var fs []*Node
		for _, m := range e.C.Managers() {
			if m != l {
				fs = append(fs, m)
			}
		}
		n := fs[e.Rng.Intn(len(fs))]
		return isolate(n, e.C.Nodes), "isolate follower " + n.Name
	})}
	// MajorityMinority splits managers into a majority and a minority, and the
	// workers at random between them.
	MajorityMinority = Nemesis{"majority-minority", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		ms := e.shuffled(e.C.Managers())
		k := len(ms)/2 + 1
		maj, min := append([]*Node(nil), ms[:k]...), append([]*Node(nil), ms[k:]...)
		for _, w := range e.C.Workers() {
			if e.Rng.Intn(2) == 0 {
				maj = append(maj, w)
			} else {
				min = append(min, w)
			}
		}
		return [][]*Node{maj, min}, "majority | minority"
	})}
	// MajorityMinorityLeader puts the leader in the minority.
	MajorityMinorityLeader = Nemesis{"majority-minority-leader", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		l, desc := e.leaderOr(ctx)
		var others []*Node
		for _, m := range e.shuffled(e.C.Managers()) {
			if m != l {
				others = append(others, m)
			}
		}
		k := len(e.C.Managers())/2 + 1
		maj := append([]*Node(nil), others[:k]...)
		min := append([]*Node{l}, others[k:]...)
		for _, w := range e.C.Workers() {
			if e.Rng.Intn(2) == 0 {
				maj = append(maj, w)
			} else {
				min = append(min, w)
			}
		}
		return [][]*Node{maj, min}, "majority | minority with " + desc
	})}
	// Bridge: two sides that cannot see each other and one manager that sees both
	// (Jepsen's bridge): with three managers, each side has one, the bridge is
	// the only node that can form a majority with either.
	Bridge = Nemesis{"bridge", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		ms := e.shuffled(e.C.Managers())
		b := ms[0]
		var left, right []*Node
		for i, n := range append(ms[1:], e.shuffled(e.C.Workers())...) {
			if i%2 == 0 {
				left = append(left, n)
			} else {
				right = append(right, n)
			}
		}
		return [][]*Node{left, right}, "bridge " + b.Name + " sees both"
	})}
	RandomHalves = Nemesis{"random-halves", partition("partition", nil, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
		all := e.shuffled(e.C.Nodes)
		k := len(all) / 2
		return [][]*Node{all[:k], all[k:]}, "random halves"
	})}
)

// PacketLoss drops pct% of packets between every pair of nodes.
func PacketLoss(pct int) Nemesis {
	return Nemesis{fmt.Sprintf("loss-%d", pct), partition("loss", nil, pct, func(ctx context.Context, e *Env) ([][]*Node, string) {
		groups := make([][]*Node, len(e.C.Nodes))
		for i, n := range e.C.Nodes {
			groups[i] = []*Node{n}
		}
		return groups, fmt.Sprintf("%d%% loss between all nodes", pct)
	})}
}

// RaftCutLeader drops the leader's Raft traffic while its gossip and API flow:
// memberlist says it is alive, Raft must still elect another leader.
func RaftCutLeader() Nemesis {
	return Nemesis{"raft-cut-leader", func(ctx context.Context, e *Env) (func() error, error) {
		port := e.C.cfg.PortBase + 1
		return partition("raft-cut", []int{port}, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
			l, desc := e.leaderOr(ctx)
			return isolate(l, e.C.Nodes), fmt.Sprintf("port %d only, %s", port, desc)
		})(ctx, e)
	}}
}

// GossipCutOne drops one node's gossip while Raft and the API flow: the leader
// hears it is dead from memberlist while its sessions keep working.
func GossipCutOne(workerOnly bool) Nemesis {
	name := "gossip-cut-one"
	if workerOnly {
		name = "gossip-cut-worker"
	}
	return Nemesis{name, func(ctx context.Context, e *Env) (func() error, error) {
		port := e.C.cfg.PortBase + 2
		return partition("gossip-cut", []int{port}, 0, func(ctx context.Context, e *Env) ([][]*Node, string) {
			pool := e.C.Nodes
			if workerOnly && len(e.C.Workers()) > 0 {
				pool = e.C.Workers()
			}
			n := pool[e.Rng.Intn(len(pool))]
			return isolate(n, e.C.Nodes), fmt.Sprintf("port %d only, %s", port, n.Name)
		})(ctx, e)
	}}
}

// Target picks the node a process fault hits.
type Target string

const (
	TargetLeader  Target = "leader"
	TargetManager Target = "manager" // a random manager
	TargetWorker  Target = "worker"  // a random worker (a manager if there is none)
	TargetAny     Target = "any"
)

func (e *Env) pick(ctx context.Context, t Target) (*Node, string) {
	switch t {
	case TargetLeader:
		return e.leaderOr(ctx)
	case TargetManager:
		ms := e.C.Managers()
		n := ms[e.Rng.Intn(len(ms))]
		return n, n.Name
	case TargetWorker:
		if ws := e.C.Workers(); len(ws) > 0 {
			n := ws[e.Rng.Intn(len(ws))]
			return n, n.Name
		}
	}
	n := e.C.Nodes[e.Rng.Intn(len(e.C.Nodes))]
	return n, n.Name
}

// restartTimeout bounds how long a restarted daemon may take to answer again.
const restartTimeout = 30 * time.Second

// Kill SIGKILLs a node's daemon (its tasks keep running, by design) and heals
// by starting it again on the same data dir.
func Kill(t Target) Nemesis {
	return Nemesis{"kill-" + string(t), func(ctx context.Context, e *Env) (func() error, error) {
		n, desc := e.pick(ctx, t)
		if err := n.Kill(); err != nil {
			return nil, err
		}
		f := e.TL.Begin("kill", "SIGKILL "+desc, n.Name)
		return func() error {
			defer e.TL.End(f)
			if err := n.Start(); err != nil {
				return err
			}
			return n.WaitAnswering(restartTimeout)
		}, nil
	}}
}

// Pause SIGSTOPs a node's daemon and heals with SIGCONT: a process that is alive
// to the kernel (its sockets accept) but answers nothing, like a long GC pause.
func Pause(t Target) Nemesis {
	return Nemesis{"pause-" + string(t), func(ctx context.Context, e *Env) (func() error, error) {
		n, desc := e.pick(ctx, t)
		if err := n.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		f := e.TL.Begin("pause", "SIGSTOP "+desc, n.Name)
		return func() error {
			defer e.TL.End(f)
			return n.Signal(syscall.SIGCONT)
		}, nil
	}}
}

// RollingRestart restarts every manager in turn (SIGTERM, then start), leader
// last, each one answering and a leader elected before the next goes down.
func RollingRestart() Nemesis {
	return Nemesis{"rolling-restart", func(ctx context.Context, e *Env) (func() error, error) {
		order := e.shuffled(e.C.Managers())
		if l, err := e.C.Leader(ctx); err == nil {
			for i, m := range order {
				if m == l {
					order = append(append(order[:i:i], order[i+1:]...), l)
					break
				}
			}
		}
		for _, m := range order {
			f := e.TL.Begin("restart", "SIGTERM and restart "+m.Name, m.Name)
			if err := m.Stop(10 * time.Second); err != nil {
				e.Logf("rolling restart: %v", err)
			}
			if err := m.Start(); err != nil {
				return nil, err
			}
			err := m.WaitAnswering(restartTimeout)
			if err == nil {
				_, err = e.C.WaitLeader(restartTimeout)
			}
			e.TL.End(f)
			if err != nil {
				return nil, fmt.Errorf("rolling restart of %s: %w", m, err)
			}
		}
		return func() error { return nil }, nil
	}}
}

// HealAll undoes every fault whatever the nemesis did: rules flushed, paused
// daemons continued, dead daemons started. A safety net before the final checks.
func HealAll(e *Env) []string {
	var notes []string
	if err := e.C.ns.SetRules(nil); err != nil {
		notes = append(notes, "heal rules: "+err.Error())
	}
	for _, n := range e.C.Nodes {
		if n.Paused() {
			if err := n.Signal(syscall.SIGCONT); err != nil {
				notes = append(notes, err.Error())
			}
		}
		if !n.Running() {
			notes = append(notes, fmt.Sprintf("%s was not running at the final heal; restarted", n))
			if err := n.Start(); err != nil {
				notes = append(notes, err.Error())
			}
		}
	}
	return notes
}
