package raftstore

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// BenchmarkStateMemory: the state of 1,000 nodes and 20 services of 1,000
// tasks, each created, assigned, started and reported running through entries
// decoded as a follower decodes them; reports the live heap per task, and the
// snapshot's size and write time at that size.
//
//	go test ./raftstore -run '^$' -bench StateMemory -benchtime 1x
func BenchmarkStateMemory(b *testing.B) {
	const nodes, services, perService = 1000, 20, 1000
	for range b.N {
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewState()
		idx := uint64(0)
		apply := func(c Command) {
			idx++
			raw, err := Encode(c)
			if err != nil {
				b.Fatal(err)
			}
			dc, err := Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Apply(idx, dc); err != nil {
				b.Fatal(err)
			}
		}
		apply(&ClusterInit{ClusterID: "c", ClusterNetwork: api.ClusterNetwork{Pool: "172.24.0.0/13", SubnetBits: 24, ServiceRange: "10.43.0.0/16"}, PortRange: [2]int{30000, 32767}, At: t0})
		for i := range nodes {
			apply(&NodeUpsert{Node: api.Node{ID: fmt.Sprintf("n%04d", i), Hostname: fmt.Sprintf("hollow-%04d", i), Addr: fmt.Sprintf("127.81.%d.%d", i/250, i%250+1),
				APIPort: 25100, RaftPort: 25101, GossipPort: 25102, Role: api.RoleWorker, Engine: "fake", Status: api.NodeReady}})
		}
		for sv := range services {
			spec := api.ServiceSpec{Name: fmt.Sprintf("s%02d", sv), Image: "hollow/app", Replicas: perService, Ports: []api.PortConfig{{TargetPort: 80}}}
			spec.Normalize()
			apply(&ServiceCreate{ID: fmt.Sprintf("svc%02d", sv), Spec: spec, At: t0})
			svc := s.Snapshot().Service(spec.Name)
			var creates, assigns, running []api.TaskOp
			for k := range perService {
				id := fmt.Sprintf("t%02d-%04d", sv, k)
				node := fmt.Sprintf("n%04d", (k+sv)%nodes)
				creates = append(creates, api.TaskOp{Kind: api.TaskOpCreate, Task: &api.Task{ID: id, ServiceID: svc.ID, ServiceName: spec.Name,
					Slot: uint64(k + 1), Spec: svc.Spec, SpecVersion: svc.SpecVersion, DesiredState: api.TaskRunning,
					Status: api.TaskStatus{State: api.TaskNew, Timestamp: t0}, CreatedAt: t0}})
				assigns = append(assigns, api.TaskOp{Kind: api.TaskOpAssign, TaskID: id, NodeID: node, At: t0})
				running = append(running, api.TaskOp{Kind: api.TaskOpStatus, TaskID: id, NodeID: node, Status: api.TaskStatus{State: api.TaskRunning,
					Message: "running", Timestamp: t0.Add(time.Second), ContainerID: "fake-1", Addr: "127.81.0.1", Ports: []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: 20001}}}})
			}
			apply(&TaskOps{Ops: creates})
			apply(&TaskOps{Ops: assigns})
			apply(&TaskOps{Ops: running})
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		tasks := services * perService
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(tasks), "heap-B/task")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
		var buf bytes.Buffer
		t1 := time.Now()
		n, err := s.Snapshot().WriteTo(&buf)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/(1<<20), "snapshot-MB")
		b.ReportMetric(float64(time.Since(t1).Milliseconds()), "snapshot-ms")
		runtime.KeepAlive(s)
	}
}
