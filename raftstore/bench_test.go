package raftstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/pki"
)

// threeManagers starts a 3-voter cluster over TCP on 127.0.0.x with raft-boltdb on
// disk and returns the leader; see threeManagersWith.
func threeManagers(tb testing.TB) (*Store, []*Store) { return threeManagersWith(tb, false) }

// threeManagersWith starts the cluster plain (TCP, raw stores) or secure, the way
// the daemon runs managers: mutual TLS between managers and every entry and
// snapshot sealed on disk.
func threeManagersWith(tb testing.TB, secure bool) (*Store, []*Store) {
	tb.Helper()
	var stores []*Store
	var ca *pki.CA
	if secure {
		var err error
		if ca, err = pki.NewCA("bench", time.Now()); err != nil {
			tb.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		cfg := Config{NodeID: fmt.Sprintf("m%d", i), RaftAddr: fmt.Sprintf("127.0.33.%d:0", i), DataDir: tb.TempDir(), Bootstrap: i == 1}
		if secure {
			key, err := NewDataKey()
			if err != nil {
				tb.Fatal(err)
			}
			cfg.DataKey = &key
			cfg.Stream = managerStream(tb, ca, cfg.NodeID, cfg.RaftAddr)
			cfg.RaftAddr = cfg.Stream.Addr().String()
		}
		st, err := Open(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		stores = append(stores, st)
	}
	tb.Cleanup(func() {
		for _, s := range stores {
			_ = s.Close()
		}
	})
	leader := stores[0]
	waitUntil(tb, 10*time.Second, leader.IsLeader)
	ctx := context.Background()
	if _, err := leader.Apply(ctx, &ClusterInit{ClusterID: "c", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 32767}}); err != nil {
		tb.Fatal(err)
	}
	for _, s := range stores[1:] {
		if err := leader.AddVoter(s.id, string(s.transport.LocalAddr())); err != nil {
			tb.Fatal(err)
		}
	}
	for _, s := range stores {
		waitUntil(tb, 10*time.Second, func() bool { return s.State().Index() >= leader.State().Index() })
	}
	return leader, stores
}

func waitUntil(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestThreeManagersReplicate(t *testing.T) {
	leader, stores := threeManagers(t)
	ctx := context.Background()
	for i := range 20 {
		if _, err := leader.Apply(ctx, &ServiceCreate{ID: fmt.Sprintf("s%d", i), Spec: spec(fmt.Sprintf("svc%d", i), 1)}); err != nil {
			t.Fatal(err)
		}
	}
	want := leader.State().Index()
	for _, s := range stores {
		waitUntil(t, 10*time.Second, func() bool { return s.State().Index() >= want })
	}
	d := stores[0].Snapshot().Digest()
	for _, s := range stores[1:] {
		if s.Snapshot().Digest() != d {
			t.Fatal("managers diverged")
		}
	}
	// A follower refuses writes: nothing is written, the error says so.
	if _, err := stores[1].Apply(ctx, &ServiceScale{Name: "svc1", Replicas: 3}); err == nil {
		t.Fatal("follower accepted a write")
	}
}

// managerStream is a raft stream layer like the daemon's: mutual TLS with a
// manager certificate of ca, managers only both ways.
func managerStream(tb testing.TB, ca *pki.CA, id, addr string) raft.StreamLayer {
	tb.Helper()
	key, csr, err := pki.NewCSR()
	if err != nil {
		tb.Fatal(err)
	}
	chain, err := ca.IssueNode(csr, pki.NodeRequest{NodeID: id, Role: api.RoleManager})
	if err != nil {
		tb.Fatal(err)
	}
	h := pki.NewCertHolder(chain.TLS(key))
	v := pki.NewVerifier(ca.ClusterID(), ca.Bundle(), nil)
	managers := []api.NodeRole{api.RoleManager}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return &benchStream{Listener: pki.NewListener(ln, pki.ServerConfig(h, v, pki.ServerOptions{Roles: managers}), pki.ListenerOptions{}),
		client: pki.ClientConfig(h, v, pki.ClientOptions{Roles: managers})}
}

type benchStream struct {
	*pki.Listener
	client *tls.Config
}

func (s *benchStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, s.client)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func statusOps(n, round int) []api.TaskOp {
	ops := make([]api.TaskOp, n)
	for i := range ops {
		ops[i] = api.TaskOp{Kind: api.TaskOpCreate, Task: &api.Task{ID: fmt.Sprintf("t%d-%d", round, i), ServiceID: "s", Slot: uint64(i + 1)}}
	}
	return ops
}

// BenchmarkApplySingle: one writer, one change per entry: a full commit round trip each.
func BenchmarkApplySingle(b *testing.B) {
	forEachSetup(b, func(b *testing.B, secure bool) {
		leader, _ := threeManagersWith(b, secure)
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := leader.ApplyTaskOps(ctx, statusOps(1, i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
	})
}

// BenchmarkApplyConcurrent: 64 writers at once; raft groups their entries into
// shared disk writes and AppendEntries (group commit).
func BenchmarkApplyConcurrent(b *testing.B) {
	forEachSetup(b, func(b *testing.B, secure bool) {
		leader, _ := threeManagersWith(b, secure)
		ctx := context.Background()
		b.ResetTimer()
		var wg sync.WaitGroup
		per := (b.N + 63) / 64
		for w := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if err := leader.ApplyTaskOps(ctx, statusOps(1, w*per+i)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(per*64)/b.Elapsed().Seconds(), "changes/s")
	})
}

// BenchmarkApplyBatched: one writer, 256 task changes per entry, as the scheduler
// and the status reporter send them.
func BenchmarkApplyBatched(b *testing.B) {
	forEachSetup(b, func(b *testing.B, secure bool) {
		leader, _ := threeManagersWith(b, secure)
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := leader.ApplyTaskOps(ctx, statusOps(256, i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "changes/s")
	})
}

// BenchmarkFSMApplyTaskOps: the FSM alone, 256 task creations per entry.
func BenchmarkFSMApplyTaskOps(b *testing.B) {
	s := NewState()
	for i := 0; i < b.N; i++ {
		data, err := Encode(&TaskOps{Ops: statusOps(256, i)})
		if err != nil {
			b.Fatal(err)
		}
		c, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Apply(uint64(i+1), c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "changes/s")
}

// forEachSetup runs a benchmark on a plain and on a secure (mutual TLS, sealed
// stores) cluster, so one run compares them.
func forEachSetup(b *testing.B, f func(b *testing.B, secure bool)) {
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "tls+sealed"
		}
		b.Run(name, func(b *testing.B) { f(b, secure) })
	}
}
