package gossip

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkFailureDetection measures how long after a member stops (its
// sockets closed, as a SIGKILL would) the survivors of a 3-member cluster
// emit EventFail with the default LAN timings. Each iteration is a fresh
// cluster. Run: go test -run '^$' -bench FailureDetection -benchtime 10x -v ./gossip/
func BenchmarkFailureDetection(b *testing.B) {
	var first, all []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		gs := cluster(b, 20, 3)
		drain(gs[0])
		drain(gs[1])
		b.StartTimer()

		t0 := time.Now()
		_ = gs[2].Shutdown()
		waitEvent(b, gs[0], 15*time.Second, EventFail, "n3")
		d0 := time.Since(t0)
		waitEvent(b, gs[1], 15*time.Second, EventFail, "n3")
		d1 := time.Since(t0)

		b.StopTimer()
		first = append(first, min(d0, d1))
		all = append(all, max(d0, d1))
		b.Logf("run %d: first survivor %s, both %s", i+1, min(d0, d1).Round(time.Millisecond), max(d0, d1).Round(time.Millisecond))
		for _, g := range gs {
			_ = g.Shutdown()
		}
		b.StartTimer()
	}
	slices.Sort(first)
	slices.Sort(all)
	b.ReportMetric(median(all).Seconds(), "median-s")
	b.ReportMetric(all[len(all)-1].Seconds(), "worst-s")
	b.ReportMetric(median(first).Seconds(), "median-first-s")
	b.Logf("%d runs: all survivors median %s worst %s; first survivor median %s worst %s",
		len(all), median(all).Round(time.Millisecond), all[len(all)-1].Round(time.Millisecond),
		median(first).Round(time.Millisecond), first[len(first)-1].Round(time.Millisecond))
}

func median(ds []time.Duration) time.Duration {
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

// drain discards the events that accumulated while the cluster formed.
func drain(g *Gossip) {
	for {
		select {
		case <-g.Events():
		default:
			return
		}
	}
}
