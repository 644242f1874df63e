package dnsdisco

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The comparison with dnsmasq (issue 14): the same names, the same dnsperf
// query mix, the same run. `make bench-dns` installs the tools and runs it.
var (
	perfDuration = flag.Duration("dnsperf.duration", 5*time.Second, "how long each dnsperf run lasts")
	perfArgs     = flag.String("dnsperf.args", "-c 4 -T 2", "dnsperf load options (clients, threads, outstanding)")
	perfNetns    = flag.Bool("dnsperf.netns", true, "run in a network namespace of its own (needs root), away from the host's netfilter")
)

// The servers listen on loopback addresses of their own, so the bench needs
// no namespace and collides with no test.
const (
	perfDnsdiscoIP = "127.90.0.1"
	perfDnsmasqIP  = "127.90.0.2"
	perfUpstream   = "127.90.0.3:53"
	perfServices   = 100
	perfTasks      = 10
)

// perfTable is perfServices services with a VIP and perfTasks tasks each, in
// the benchmarking range (RFC 2544): record data only.
func perfTable() Table {
	tbl := Table{Services: map[string]Service{}, Nodes: map[string]net.IP{"n1": net.IPv4(198, 18, 255, 1)}}
	for i := range perfServices {
		svc := Service{VIP: net.IPv4(198, 18, 0, byte(i+1))}
		for j := range perfTasks {
			svc.Tasks = append(svc.Tasks, Task{Addr: net.IPv4(198, 19, byte(i), byte(j+1)), Node: "n1"})
		}
		tbl.Services[perfName(i)] = svc
	}
	return tbl
}

func perfName(i int) string { return fmt.Sprintf("svc%03d", i) }

// writePerfHosts writes perfTable as a hosts file: the VIP under the
// service name, one line per task under tasks.NAME, zoned and bare.
func writePerfHosts(path string) error {
	var b strings.Builder
	for i := range perfServices {
		n := perfName(i)
		fmt.Fprintf(&b, "198.18.0.%d %s.swarmlet %s\n", i+1, n, n)
		for j := range perfTasks {
			fmt.Fprintf(&b, "198.19.%d.%d tasks.%s.swarmlet tasks.%s\n", i, j+1, n, n)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writePerfQueries writes the dnsperf query mix: per service, 4 A queries of
// the VIP name, 4 of the task set (10 addresses), one name that does not
// exist (NXDOMAIN) and one AAAA of the VIP name (NODATA). SRV and PTR are
// left out: a hosts file has no SRV records, and dnsdisco has no PTR.
func writePerfQueries(path string) error {
	var b strings.Builder
	for i := range perfServices {
		n := perfName(i)
		for range 4 {
			fmt.Fprintf(&b, "%s.swarmlet A\n", n)
		}
		for range 4 {
			fmt.Fprintf(&b, "tasks.%s.swarmlet A\n", n)
		}
		fmt.Fprintf(&b, "nx%03d.swarmlet A\n", i)
		fmt.Fprintf(&b, "%s.swarmlet AAAA\n", n)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// nodeObserve counts queries the way the node's metrics do (two counter
// vectors, one label each), so the bench pays what a real node pays.
func nodeObserve() func(qtype, kind string) {
	q := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "q"}, []string{"qtype"})
	a := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "a"}, []string{"kind"})
	return func(qtype, kind string) {
		q.WithLabelValues(qtype).Inc()
		a.WithLabelValues(kind).Inc()
	}
}

// BenchmarkVersusDnsmasq runs dnsperf against dnsdisco and against dnsmasq
// serving the same names from a hosts file, one after the other in each
// round (the order alternating), and reports both rates and their ratio.
// The machine is shared, so use several rounds: -benchtime 5x. dnsdisco
// runs in this process, so -cpuprofile profiles it under the load.
func BenchmarkVersusDnsmasq(b *testing.B) {
	perf, err1 := exec.LookPath("dnsperf")
	masq, err2 := exec.LookPath("dnsmasq")
	if err := errors.Join(err1, err2); err != nil {
		b.Skipf("needs dnsperf and dnsmasq (apt-get install dnsperf dnsmasq-base; make bench-dns does): %v", err)
	}
	if *perfNetns {
		enterNetns(b)
	}
	dir := b.TempDir()
	hosts, queryFile := filepath.Join(dir, "hosts"), filepath.Join(dir, "queries")
	if err := errors.Join(writePerfHosts(hosts), writePerfQueries(queryFile)); err != nil {
		b.Fatal(err)
	}

	// Configured as a node configures it: metrics, an upstream (never
	// asked: every name of the mix is in the zone) and the allow list.
	s := New(Config{Addr: perfDnsdiscoIP + ":0", Observe: nodeObserve(), Upstreams: []string{perfUpstream},
		RecursionFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	s.SetTable(perfTable())
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })

	masqAddr, masqPid := startDnsmasq(b, masq, hosts)
	// cpu is the CPU time the server has used so far: this process for
	// dnsdisco (the bench itself only waits meanwhile), dnsmasq's own.
	targets := []struct {
		name, addr string
		cpu        func() time.Duration
	}{{"dnsdisco", s.Addr(), selfCPU}, {"dnsmasq", masqAddr, func() time.Duration { return procCPU(masqPid) }}}
	for _, t := range targets {
		checkPerfAnswers(b, t.name, t.addr)
	}

	rate, cpu, queries := map[string]float64{}, map[string]time.Duration{}, map[string]int{}
	b.ResetTimer()
	round := 0
	for b.Loop() {
		for k := range targets {
			t := targets[(k+round)%len(targets)]
			cpu0 := t.cpu()
			r, err := runDnsperf(perf, t.addr, queryFile)
			if err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
			used := t.cpu() - cpu0
			b.Logf("round %d %s: %.0f q/s, %.1f µs CPU per query, lost %s", round, t.name, r.qps,
				float64(used.Microseconds())/float64(r.completed), r.lost)
			rate[t.name] += r.qps
			cpu[t.name] += used
			queries[t.name] += r.completed
		}
		round++
	}
	perQuery := func(name string) float64 { return float64(cpu[name].Nanoseconds()) / 1e3 / float64(queries[name]) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rate["dnsdisco"]/float64(round), "dnsdisco-q/s")
	b.ReportMetric(rate["dnsmasq"]/float64(round), "dnsmasq-q/s")
	b.ReportMetric(rate["dnsdisco"]/rate["dnsmasq"], "ratio")
	b.ReportMetric(perQuery("dnsdisco"), "dnsdisco-cpu-µs/q")
	b.ReportMetric(perQuery("dnsmasq"), "dnsmasq-cpu-µs/q")
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user and system) process pid has used, in the
// kernel's clock ticks (USER_HZ, 100 on Linux).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it do not.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// enterNetns moves the bench's goroutine, locked to its thread, into a new
// network namespace with only its loopback up: the sockets it opens and the
// processes it starts are in there. The namespace is anonymous; it goes
// when its last socket and process do.
func enterNetns(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Log("not root: running on the host's loopback")
		return
	}
	runtime.LockOSThread()
	// Never unlocked: the thread ends with the goroutine, namespace and all.
	if _, err := netns.New(); err != nil {
		b.Fatalf("new netns: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		b.Fatalf("loopback up: %v", err)
	}
}

// startDnsmasq runs dnsmasq on its own loopback address, answering the
// hosts file and nothing else (names in the zone that are not in the file
// get NXDOMAIN, like from dnsdisco), and stops it when the bench ends.
func startDnsmasq(b *testing.B, bin, hosts string) (addr string, pid int) {
	port := freeUDPPort(b, perfDnsmasqIP)
	cmd := exec.Command(bin, "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv",
		"--addn-hosts="+hosts, "--listen-address="+perfDnsmasqIP, "--bind-interfaces", "--port="+port,
		"--pid-file=", "--local=/swarmlet/", "--local-ttl=5", "--user=root", "--log-facility=-")
	// Should this process die first, the kernel ends dnsmasq too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr = net.JoinHostPort(perfDnsmasqIP, port)
	deadline := time.Now().Add(10 * time.Second)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	for {
		m := new(dns.Msg)
		m.SetQuestion(perfName(0)+".swarmlet.", dns.TypeA)
		if r, _, err := c.Exchange(m, addr); err == nil && len(r.Answer) == 1 {
			return addr, cmd.Process.Pid
		}
		select {
		case <-exited:
			b.Fatalf("dnsmasq exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("dnsmasq on %s does not answer: %s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeUDPPort(b *testing.B, ip string) string {
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	return port
}

// checkPerfAnswers makes sure both servers give the mix the same kinds of
// answer before their rates are compared.
func checkPerfAnswers(b *testing.B, name, addr string) {
	c := &dns.Client{Timeout: 2 * time.Second}
	for _, tc := range []struct {
		qname   string
		qtype   uint16
		rcode   int
		answers int
	}{
		{perfName(7) + ".swarmlet.", dns.TypeA, dns.RcodeSuccess, 1},
		{"tasks." + perfName(7) + ".swarmlet.", dns.TypeA, dns.RcodeSuccess, perfTasks},
		{"nx007.swarmlet.", dns.TypeA, dns.RcodeNameError, 0},
		{perfName(7) + ".swarmlet.", dns.TypeAAAA, dns.RcodeSuccess, 0},
	} {
		m := new(dns.Msg)
		m.SetQuestion(tc.qname, tc.qtype)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			b.Fatalf("%s: %s: %v", name, tc.qname, err)
		}
		if r.Rcode != tc.rcode || len(r.Answer) != tc.answers {
			b.Fatalf("%s: %s %s: rcode %s with %d answers, want %s with %d", name, tc.qname, dns.TypeToString[tc.qtype],
				dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tc.rcode], tc.answers)
		}
	}
}

var qpsLine = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)

type dnsperfResult struct {
	qps       float64
	completed int
	lost      string // dnsperf's line
}

var completedLine = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)

// runDnsperf runs one dnsperf. A run that got rcodes other than the mix's
// is an error: its rate would not be comparable.
func runDnsperf(bin, addr, queries string) (dnsperfResult, error) {
	var res dnsperfResult
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-s", host, "-p", port, "-d", queries, "-l", strconv.Itoa(int(perfDuration.Seconds()))}
	args = append(args, strings.Fields(*perfArgs)...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("dnsperf: %v: %s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if m := qpsLine.FindStringSubmatch(line); m != nil {
			res.qps, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := completedLine.FindStringSubmatch(line); m != nil {
			res.completed, _ = strconv.Atoi(m[1])
		}
		if strings.Contains(line, "Queries lost:") {
			res.lost = strings.Join(strings.Fields(line)[2:], " ")
		}
		if strings.Contains(line, "Response codes:") {
			for _, bad := range []string{"SERVFAIL", "REFUSED", "FORMERR", "NOTIMP"} {
				if strings.Contains(line, bad) {
					return res, fmt.Errorf("unexpected answers: %s", line)
				}
			}
		}
	}
	if res.qps == 0 || res.completed == 0 {
		return res, fmt.Errorf("no rate in dnsperf output: %s", out)
	}
	return res, nil
}
