package scenarios

import (
	"testing"
	"time"
)

// Timings: the full suite gives each fault time to bite (elections, gossip
// suspicion ~2.5s, task replacement); the -short subset keeps a few minutes.
func timing(short bool) (cycles int, faultFor, healFor time.Duration) {
	if short {
		return 2, 8 * time.Second, 6 * time.Second
	}
	return 3, 12 * time.Second, 8 * time.Second
}

func run(t *testing.T, name string, short bool, managers, workers int, n Nemesis) {
	t.Run(name, func(t *testing.T) {
		cycles, faultFor, healFor := timing(testing.Short())
		RunScenario(t, Scenario{
			Name: t.Name(), Managers: managers, Workers: workers, Nemesis: n,
			Cycles: cycles, FaultFor: faultFor, HealFor: healFor, Short: short,
		})
	})
}

func TestPartition(t *testing.T) {
	run(t, "majority", true, 3, 2, MajorityMinority)
	run(t, "majority-leader", false, 3, 2, MajorityMinorityLeader)
	run(t, "isolate-one", false, 3, 2, IsolateOne)
	run(t, "isolate-leader", false, 3, 2, IsolateLeader)
	run(t, "bridge", false, 3, 2, Bridge)
	run(t, "random-halves", false, 5, 1, RandomHalves)
}

func TestLoss(t *testing.T) {
	run(t, "loss-20", false, 3, 2, PacketLoss(20))
}

func TestKill(t *testing.T) {
	run(t, "leader", true, 3, 2, Kill(TargetLeader))
	run(t, "worker", false, 3, 2, Kill(TargetWorker))
	run(t, "any", false, 3, 2, Kill(TargetAny))
}

func TestPause(t *testing.T) {
	run(t, "worker", true, 3, 2, Pause(TargetWorker))
	run(t, "leader", false, 3, 2, Pause(TargetLeader))
}

func TestRollingRestart(t *testing.T) {
	run(t, "managers", false, 3, 2, RollingRestart())
}

func TestSubsystem(t *testing.T) {
	run(t, "raft-cut-leader", false, 3, 2, RaftCutLeader())
	run(t, "gossip-cut-worker", false, 3, 2, GossipCutOne(true))
}
