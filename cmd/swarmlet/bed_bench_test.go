package main

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/cnet/ipam"
)

var (
	rpsLine  = regexp.MustCompile(`requests=(\d+) seconds=([\d.]+) rps=(\d+) failed=(\d+)`)
	pairLine = regexp.MustCompile(`a_p50_us=(\d+) b_p50_us=(\d+) a_n=\d+ b_n=\d+ failed=(\d+)`)
)

// benchIn runs `whoami bench|dnsbench ...` in the client container and returns
// its rate, failing on any failed request.
func (c *bedCluster) benchIn(b *testing.B, ctr string, args ...string) float64 {
	b.Helper()
	out, err := c.inContainer(1, ctr, args...)
	m := rpsLine.FindStringSubmatch(out)
	if err != nil || m == nil || m[4] != "0" {
		b.Fatalf("whoami %v: %v %q", args, err, out)
	}
	r, _ := strconv.ParseFloat(m[3], 64)
	return r
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkBedNetwork measures, on a 3-host bed, from a client container on
// host 1 (new connection per request, 4 clients): requests/s through web's
// VIP against requests/s to web's three task addresses directly (round
// robin), in alternating rounds; lookups/s of `web` answered to the container
// (through Docker's embedded resolver, and straight to the node's DNS on the
// gateway); and the time from a new task's RUNNING to its first answer
// through the VIP from a host without it.
//
//	go test -run '^$' -bench BedNetwork -benchtime 1x ./cmd/swarmlet
func BenchmarkBedNetwork(b *testing.B) {
	c := newBedCluster(b, 3)
	c.up()
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "3", "-p", "8080:80", bedImage)
	c.mustCLI(1, "service", "create", "--name", "client", "--constraint", "node.hostname==h1", bedImage)
	vip := c.vip("web")
	client := c.container(1, "client")
	gateway := ipam.Gateway(netip.MustParsePrefix(c.subnetOf(1))).String()
	for b.Loop() {
		web := c.serving("web")
		var direct []string
		for _, x := range web {
			direct = append(direct, "http://"+x.Addr+"/")
		}
		// Pairs of short rounds back to back: the machine is shared, and the
		// ratio within a pair is what the other load disturbs least.
		var viaVIP, toTasks, ratio []float64
		// The order within a pair alternates, so a load that grows or fades
		// over the run favours neither.
		for round := range 15 {
			var d, v float64
			if round%2 == 0 {
				d = c.benchIn(b, client, append([]string{"bench", "1s", "4"}, direct...)...)
				v = c.benchIn(b, client, "bench", "1s", "4", "http://"+vip+"/")
			} else {
				v = c.benchIn(b, client, "bench", "1s", "4", "http://"+vip+"/")
				d = c.benchIn(b, client, append([]string{"bench", "1s", "4"}, direct...)...)
			}
			toTasks, viaVIP, ratio = append(toTasks, d), append(viaVIP, v), append(ratio, v/d)
		}
		// The same comparison by latency, the two paths alternated request
		// by request: a busy machine's load falls on both alike.
		out, err := c.inContainer(1, client, append([]string{"pair", "10s", "2", "http://" + vip + "/"}, direct...)...)
		m := pairLine.FindStringSubmatch(out)
		if err != nil || m == nil || m[3] != "0" {
			b.Fatalf("whoami pair: %v %q", err, out)
		}
		va, _ := strconv.ParseFloat(m[1], 64)
		vb, _ := strconv.ParseFloat(m[2], 64)
		b.ReportMetric(va/1000, "ms-p50-vip")
		b.ReportMetric(vb/1000, "ms-p50-task")
		b.ReportMetric(vb/va, "vip/task-by-latency")
		b.ReportMetric(median(viaVIP), "vip-req/s")
		b.ReportMetric(median(toTasks), "task-req/s")
		b.ReportMetric(median(ratio), "vip/task")
		b.Logf("requests/s, rounds: VIP %v, task addresses %v; ratio per round %.2f", viaVIP, toTasks, ratio)

		b.ReportMetric(c.benchIn(b, client, "dnsbench", "web", "3s", "4"), "lookups/s-embedded")
		b.ReportMetric(c.benchIn(b, client, "dnsbench", "web.swarmlet.", "3s", "4", gateway+":53"), "lookups/s-gateway")

		b.ReportMetric(float64(c.runningToVIP(b, vip).Microseconds())/1000, "ms-running-to-vip")
	}
}

// runningToVIP scales web up by one, five times, and returns the median time
// from each new task's RUNNING (as its worker reported it) to its first
// answer through the VIP from a host that does not run it.
func (c *bedCluster) runningToVIP(b *testing.B, vip string) time.Duration {
	b.Helper()
	var took []float64
	for round := range 5 {
		before := idsOf(c.serving("web"))
		// Every host watches the VIP from the moment of the scale.
		var mu sync.Mutex
		first := map[int]map[string]time.Time{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range c.nodes {
			first[i] = map[string]time.Time{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := c.nodes[i].h.HTTPClient(time.Second)
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := cl.Get("http://" + vip + "/")
					if err != nil {
						continue
					}
					buf := make([]byte, 512)
					n, _ := resp.Body.Read(buf)
					resp.Body.Close()
					now := time.Now()
					for id := range answers(string(buf[:n])) {
						mu.Lock()
						if _, ok := first[i][id]; !ok {
							first[i][id] = now
						}
						mu.Unlock()
					}
				}
			}()
		}
		c.mustCLI(1, "service", "scale", fmt.Sprintf("web=%d", 4+round))
		var fresh bedTask
		waitForB(b, 20*time.Second, func() bool {
			for _, x := range c.serving("web") {
				if !before[x.ID] {
					fresh = x
					return true
				}
			}
			return false
		})
		observer := 1
		if c.hostOf(fresh.Node) == 1 {
			observer = 2
		}
		waitForB(b, 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			_, ok := first[observer][fresh.ID]
			return ok
		})
		close(stop)
		wg.Wait()
		running, err := time.Parse(time.RFC3339Nano, fresh.Since)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, float64(first[observer][fresh.ID].Sub(running)))
	}
	b.Logf("RUNNING to reachable through the VIP from another host: %v", fmtDurations(took))
	return time.Duration(median(took))
}

func fmtDurations(xs []float64) []string {
	var out []string
	for _, x := range xs {
		out = append(out, time.Duration(x).Round(time.Millisecond).String())
	}
	return out
}
