package scenarios

import (
	"fmt"
	"regexp"
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

// TestSnapshotCatchUp cuts a follower off long enough that the leader compacts
// its log past the follower's position, so healing needs InstallSnapshot. The
// daemon must honour the tuning environment for that (raft's defaults, 8192
// entries, take far longer than a test to reach).
func TestSnapshotCatchUp(t *testing.T) {
	t.Run("follower", func(t *testing.T) {
		_, _, healFor := timing(testing.Short())
		RunScenario(t, Scenario{
			Name: t.Name(), Managers: 3, Workers: 1, Nemesis: IsolateFollower,
			Cycles: 1, FaultFor: 40 * time.Second, HealFor: healFor,
			Env: []string{"SWARMLET_RAFT_SNAPSHOT_THRESHOLD=64", "SWARMLET_RAFT_TRAILING_LOGS=16", "SWARMLET_RAFT_SNAPSHOT_INTERVAL=2s"},
			Extra: func(c *Cluster, faults []Fault) []Verdict {
				v := Verdict{Checker: "snapshot-installed"}
				if len(faults) == 0 || len(faults[0].Targets) != 1 {
					v.Status, v.Summary = Skipped, "no isolated follower recorded"
					return []Verdict{v}
				}
				n := c.Node(faults[0].Targets[0])
				if k := c.LogCount(n, installedSnapshot); k > 0 {
					v.Status, v.Summary = Pass, fmt.Sprintf("%s caught up through %d snapshot install(s), and the common checks hold", n, k)
				} else {
					v.Status, v.Summary = Skipped, fmt.Sprintf("%s caught up from the log, not a snapshot: the daemon does not honour SWARMLET_RAFT_SNAPSHOT_THRESHOLD/TRAILING_LOGS/SNAPSHOT_INTERVAL", n)
				}
				return []Verdict{v}
			},
		})
	})
}

// installedSnapshot is what hashicorp/raft logs on a follower that restored a
// snapshot sent by the leader.
var installedSnapshot = regexp.MustCompile(`Installed remote snapshot`)

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
