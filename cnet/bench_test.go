package cnet

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/internal/netnstest"
)

// BenchmarkThroughput measures single-stream TCP throughput with iperf3 from
// a container on one host to a container on the other through the vxlan,
// and host to host over the same underlay veth, in the same run, and reports
// both and their ratio. Each iteration runs both for iperfSeconds, so run it
// once:
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./cnet/
func BenchmarkThroughput(b *testing.B) {
	netnstest.RequireRoot(b)
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		b.Skip("needs iperf3 (apt-get install -y iperf3)")
	}
	h1, h2 := newBed(b)
	tab := Table{Peers: []Peer{h1.peer(), h2.peer()}}
	syncOK(b, h1.overlay(b, testDev), tab)
	syncOK(b, h2.overlay(b, testDev), tab)

	overlayAddr, hostAddr := h2.ctrAddr.String(), h2.underlay.String()
	iperfServer(b, iperf, h2.ctr, overlayAddr, 5201)
	iperfServer(b, iperf, h2.ns, hostAddr, 5202)

	var hostBPS, overlayBPS float64
	b.ResetTimer()
	for range b.N {
		hostBPS += iperfClient(b, iperf, h1.ns, hostAddr, 5202)
		overlayBPS += iperfClient(b, iperf, h1.ctr, overlayAddr, 5201)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(hostBPS/n/1e9, "host-Gbit/s")
	b.ReportMetric(overlayBPS/n/1e9, "overlay-Gbit/s")
	b.ReportMetric(overlayBPS/hostBPS, "overlay/host")
}

const iperfSeconds = 3

// iperfServer starts an iperf3 server inside ns and waits until it accepts.
func iperfServer(b *testing.B, iperf string, ns *testNS, addr string, port int) {
	b.Helper()
	cmd := exec.Command(iperf, "-s", "-B", addr, "-p", strconv.Itoa(port))
	must(b, "start iperf3 server", ns.Do(cmd.Start))
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	hostport := fmt.Sprintf("%s:%d", addr, port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := reach(ns, hostport, time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("iperf3 server on %s did not come up: %v", hostport, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// iperfClient runs one iperf3 test from inside ns and returns the bits per
// second the server received.
func iperfClient(b *testing.B, iperf string, ns *testNS, addr string, port int) float64 {
	b.Helper()
	out, err := ns.Run(iperf, "-c", addr, "-p", strconv.Itoa(port), "-t", strconv.Itoa(iperfSeconds), "-J")
	if err != nil {
		b.Fatalf("iperf3 client to %s: %v", addr, err)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("iperf3 to %s: %v %s\n%s", addr, err, res.Error, out)
	}
	return res.End.SumReceived.BitsPerSecond
}
