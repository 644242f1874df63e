package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/raftstore"
)

// BenchmarkPlacementThroughRaft measures end-to-end placement on a 3-manager Raft
// cluster over loopback TCP with raft-boltdb: from the ServiceCreate commit to every
// task assigned, through the real orchestrator and scheduler loops.
//
//	go test ./node -run '^$' -bench PlacementThroughRaft -benchtime 3x
func BenchmarkPlacementThroughRaft(b *testing.B) {
	const nodes, replicas = 100, 2000
	var stores []*raftstore.Store
	for i := 1; i <= 3; i++ {
		st, err := raftstore.Open(raftstore.Config{NodeID: fmt.Sprintf("m%d", i), RaftAddr: fmt.Sprintf("127.0.34.%d:0", i),
			DataDir: b.TempDir(), Bootstrap: i == 1})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		stores = append(stores, st)
	}
	leader := stores[0]
	for !leader.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	must := func(_ any, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(leader.Apply(ctx, &raftstore.ClusterInit{ClusterID: "c", ClusterNetwork: api.ClusterNetwork{Pool: "10.42.0.0/16", SubnetBits: 24, ServiceRange: "10.43.0.0/16"}, PortRange: [2]int{30000, 32767}}))
	for i, s := range stores[1:] {
		if err := leader.AddVoter(fmt.Sprintf("m%d", i+2), s.LocalAddr()); err != nil {
			b.Fatal(err)
		}
	}
	for i := range nodes {
		must(leader.Apply(ctx, &raftstore.NodeUpsert{Node: api.Node{ID: fmt.Sprintf("n%03d", i), Addr: "127.0.0.1", Role: api.RoleWorker,
			Status: api.NodeReady, Availability: api.AvailabilityActive, Resources: api.Resources{NanoCPUs: 8e9, MemoryBytes: 32 << 30}}}))
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = dispatcher.NewOrchestrator(storeAdapter{leader}, nil, time.Now).Run(lctx) }()
	go func() { _ = dispatcher.NewScheduler(storeAdapter{leader}, nil, time.Now).Run(lctx) }()

	b.ResetTimer()
	total := time.Duration(0)
	for n := 0; n < b.N; n++ {
		name := fmt.Sprintf("svc%d", n)
		t0 := time.Now()
		res, err := leader.Apply(ctx, &raftstore.ServiceCreate{ID: name, Spec: api.ServiceSpec{Name: name, Image: "x", Replicas: replicas}, At: t0})
		if err != nil {
			b.Fatal(err)
		}
		svc := res.(*api.Service)
		for {
			assigned := 0
			for _, t := range leader.Snapshot().TasksByService(svc.ID) {
				if t.NodeID != "" && t.DesiredState == api.TaskRunning {
					assigned++
				}
			}
			if assigned == replicas {
				break
			}
			<-leader.Watch()
		}
		total += time.Since(t0)
	}
	b.ReportMetric(float64(b.N*replicas)/total.Seconds(), "placements/s")
}
