package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// End to end test of service discovery and load balancing with the built binary:
// one daemon per network namespace, the namespaces joined by a bridge, the
// nftables balancer and the DNS server on port 53 of each node's address.
//
// Network safety: every address, route, bridge and nftables rule lives in
// namespaces this test creates (`ip netns add swl-e2e-*`) and deletes in
// t.Cleanup; the root namespace is only read (nft list tables) to check that
// nothing landed there. The daemons' unix sockets are files, so the CLI reaches
// them from the root namespace without any route.

// e2eNet is a hub namespace with a bridge and one namespace per node, each with
// a veth into the bridge and the address 10.<subnet>.0.<i>/24.
type e2eNet struct {
	t      *testing.T
	prefix string
	subnet int
	hub    string
	nodes  map[int]*e2eNode
	dir    string
	made   []string // namespaces created, in order
}

type e2eNode struct {
	i       int
	ns      string
	ip      string
	dataDir string
	id      string
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *lockedWriter
}

func (n *e2eNode) sock() string { return "unix://" + filepath.Join(n.dataDir, "swarmlet.sock") }

func requireNetnsTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces, veths and nftables rules")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (iproute2, nftables): %v", tool, err)
		}
	}
}

func newE2ENet(t *testing.T, nodes int) *e2eNet {
	t.Helper()
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	n := &e2eNet{t: t, prefix: "swl-e2e-" + hex.EncodeToString(rb[:]), subnet: 200 + mrand.IntN(51),
		nodes: map[int]*e2eNode{}, dir: t.TempDir()}
	n.hub = n.prefix + "-hub"
	t.Cleanup(n.cleanup)

	n.addNS(n.hub)
	n.ip(n.hub, "link", "add", "br0", "type", "bridge")
	n.ip(n.hub, "link", "set", "br0", "up")
	n.ip(n.hub, "link", "set", "lo", "up")
	for i := 1; i <= nodes; i++ {
		node := &e2eNode{i: i, ns: fmt.Sprintf("%s-n%d", n.prefix, i), ip: fmt.Sprintf("10.%d.0.%d", n.subnet, i),
			dataDir: filepath.Join(n.dir, fmt.Sprintf("n%d", i)), log: &lockedWriter{w: &bytes.Buffer{}}}
		n.nodes[i] = node
		n.addNS(node.ns)
		hv := fmt.Sprintf("veth%d", i)
		// Both ends are created in the hub and the peer is moved straight into
		// the node's namespace: nothing ever exists in the root namespace.
		n.ip(n.hub, "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", node.ns)
		n.ip(n.hub, "link", "set", hv, "master", "br0", "up")
		n.ip(node.ns, "link", "set", "lo", "up")
		n.ip(node.ns, "addr", "add", node.ip+"/24", "dev", "eth0")
		n.ip(node.ns, "link", "set", "eth0", "up")
		// A new namespace inherits forwarding from the root namespace; start
		// from the kernel's default (off) so that the test does not depend on
		// the host: the daemon must enable what its routing mesh needs.
		if err := inNS(node.ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0o644)
		}); err != nil {
			t.Fatalf("node %d: ip_forward=0: %v", i, err)
		}
	}
	return n
}

func (n *e2eNet) addNS(name string) {
	n.t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		n.t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n.made = append(n.made, name)
}

// ip runs `ip -n NS ...`: always inside one of the test's namespaces.
func (n *e2eNet) ip(ns string, args ...string) string {
	n.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// exec runs a command inside namespace ns.
func (n *e2eNet) exec(ns string, name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	return string(out), err
}

// cleanup ends the daemons and every task process in the test's namespaces,
// then deletes the namespaces (and with them all addresses, links and tables).
func (n *e2eNet) cleanup() {
	for _, node := range n.nodes {
		if node.cmd != nil && node.cmd.Process != nil {
			_ = node.cmd.Process.Kill()
			<-node.exited
		}
	}
	inodes := map[uint64]bool{}
	for _, ns := range n.made {
		var st syscall.Stat_t
		if syscall.Stat("/run/netns/"+ns, &st) == nil {
			inodes[st.Ino] = true
		}
	}
	// Tasks outlive their daemon by design: end the ones in our namespaces.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := pidsInNetns(inodes)
		if len(pids) == 0 || time.Now().After(deadline) {
			if len(pids) > 0 {
				n.t.Errorf("processes left in the test namespaces: %v", pids)
			}
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n.t.Failed() {
		for i := 1; i <= len(n.nodes); i++ {
			n.t.Logf("--- node %d log (tail)\n%s", i, tail(n.nodes[i].logString(), 60))
		}
	}
	for i := len(n.made) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", n.made[i]).CombinedOutput(); err != nil {
			n.t.Errorf("ip netns del %s: %v: %s", n.made[i], err, out)
		}
	}
}

// pidsInNetns lists the processes whose network namespace is one of inodes.
func pidsInNetns(inodes map[uint64]bool) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(d, "ns", "net"), &st) != nil || !inodes[st.Ino] {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "%d", &pid); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (n *e2eNode) logString() string {
	n.log.mu.Lock()
	defer n.log.mu.Unlock()
	return n.log.w.String()
}

// start runs node i's daemon inside its namespace: init when token is "", else
// join node 1.
func (n *e2eNet) start(i int, token string, more ...string) {
	n.t.Helper()
	node := n.nodes[i]
	args := []string{"netns", "exec", node.ns, swarmletBin, "init"}
	if token != "" {
		args = []string{"netns", "exec", node.ns, swarmletBin, "join", "--token", token}
	}
	args = append(args, "--advertise-addr", node.ip, "--data-dir", node.dataDir, "--hostname", fmt.Sprintf("node%d", i),
		"--engine", "process", "--dns-port", "53", "--dns-upstream", "127.0.0.1:1", "--lb", "nftables")
	args = append(args, more...)
	if token != "" {
		args = append(args, n.nodes[1].ip)
	}
	cmd := exec.Command("ip", args...) // ip execs the daemon: same PID
	cmd.Stdout, cmd.Stderr = node.log, node.log
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	node.cmd, node.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(node.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, _, err := n.cli(i, "info"); err == nil {
			return
		}
		select {
		case <-node.exited:
			n.t.Fatalf("node %d exited\n%s", i, node.logString())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %d did not come up\n%s", i, node.logString())
		}
	}
}

// cli runs the CLI in the root namespace against node i's unix socket.
func (n *e2eNet) cli(i int, args ...string) (string, string, error) {
	cmd := exec.Command(swarmletBin, append([]string{"--host", n.nodes[i].sock()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (n *e2eNet) mustCLI(i int, args ...string) string {
	n.t.Helper()
	out, errOut, err := n.cli(i, args...)
	if err != nil {
		n.t.Fatalf("swarmlet %s on node %d: %v: %s", strings.Join(args, " "), i, err, errOut)
	}
	return out
}

// inNS runs f on an OS thread switched into the named namespace. Sockets made
// in f belong to that namespace for life.
func inNS(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		cur, err := netns.Get()
		if err != nil || !cur.Equal(target) || cur.Equal(orig) {
			errc <- fmt.Errorf("thread is not in netns %s", name)
			return // the thread stays locked and is discarded
		}
		cur.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err))
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dnsQuery asks server (port 53) from inside namespace ns.
func dnsQuery(ns, server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Timeout: time.Second}
	var resp *dns.Msg
	err := inNS(ns, func() error {
		var err error
		resp, _, err = c.Exchange(m, net.JoinHostPort(server, "53"))
		return err
	})
	return resp, err
}

// httpClient dials every connection from inside namespace ns, one connection per
// request so that each request is balanced anew.
func httpClient(ns string) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNS(ns, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

var taskLine = regexp.MustCompile(`task=(\S+) slot=\S+ node=\S+`)

// hits makes n requests to url from namespace ns and counts answers by task ID.
func hits(ns, url string, n int) (map[string]int, error) {
	c := httpClient(ns)
	byTask := map[string]int{}
	for range n {
		resp, err := c.Get(url)
		if err != nil {
			return byTask, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return byTask, err
		}
		m := taskLine.FindStringSubmatch(string(b))
		if m == nil {
			return byTask, fmt.Errorf("unexpected answer %q", b)
		}
		byTask[m[1]]++
	}
	return byTask, nil
}

type srvAnswer struct {
	Target string // node ID
	Addr   string // from the glue
	Port   uint16
}

// dnsView is what one node's DNS server says about a service.
type dnsView struct {
	VIP       []string
	ZonedVIP  []string
	TaskAddrs []string
	SRV       []srvAnswer
}

func aRecords(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	sort.Strings(out)
	return out
}

func (n *e2eNet) dnsLookup(from int, svc string) (dnsView, error) {
	node := n.nodes[from]
	var v dnsView
	for _, q := range []struct {
		name string
		dst  *[]string
	}{{svc + ".", &v.VIP}, {svc + ".swarmlet.", &v.ZonedVIP}, {"tasks." + svc + ".", &v.TaskAddrs}} {
		m, err := dnsQuery(node.ns, node.ip, q.name, dns.TypeA)
		if err != nil {
			return v, fmt.Errorf("A %s: %w", q.name, err)
		}
		if m.Rcode != dns.RcodeSuccess {
			return v, fmt.Errorf("A %s: %s", q.name, dns.RcodeToString[m.Rcode])
		}
		*q.dst = aRecords(m)
	}
	m, err := dnsQuery(node.ns, node.ip, "tasks."+svc+".", dns.TypeSRV)
	if err != nil {
		return v, fmt.Errorf("SRV tasks.%s: %w", svc, err)
	}
	// SRV on the bare and the zoned service name answers the same (as Consul does).
	for _, name := range []string{svc + ".", svc + ".swarmlet."} {
		m2, err := dnsQuery(node.ns, node.ip, name, dns.TypeSRV)
		if err != nil {
			return v, fmt.Errorf("SRV %s: %w", name, err)
		}
		if len(m2.Answer) != len(m.Answer) {
			return v, fmt.Errorf("SRV %s: %d answers, tasks.%s has %d", name, len(m2.Answer), svc, len(m.Answer))
		}
	}
	glue := map[string]string{}
	for _, rr := range m.Extra {
		if a, ok := rr.(*dns.A); ok {
			glue[a.Hdr.Name] = a.A.String()
		}
	}
	for _, rr := range m.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			id, _, _ := strings.Cut(s.Target, ".nodes.")
			v.SRV = append(v.SRV, srvAnswer{Target: id, Addr: glue[s.Target], Port: s.Port})
		}
	}
	slices.SortFunc(v.SRV, func(a, b srvAnswer) int {
		if c := strings.Compare(a.Target, b.Target); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return v, nil
}

// nxdomain checks that name is answered NXDOMAIN by node from's server.
func (n *e2eNet) nxdomain(from int, name string) error {
	node := n.nodes[from]
	m, err := dnsQuery(node.ns, node.ip, name, dns.TypeA)
	if err != nil {
		return fmt.Errorf("A %s: %w", name, err)
	}
	if m.Rcode != dns.RcodeNameError {
		return fmt.Errorf("A %s: %s %v, want NXDOMAIN", name, dns.RcodeToString[m.Rcode], m.Answer)
	}
	return nil
}

// expected is what DNS and LB should show for the running tasks.
type expected struct {
	vip   string
	addrs []string
	srv   []srvAnswer
	tasks map[string]bool
}

func (n *e2eNet) expect(svc, vip string) expected {
	n.t.Helper()
	out, errOut, err := n.cli(1, "service", "ps", "--format", "json", svc)
	if err != nil {
		n.t.Fatalf("service ps: %v: %s", err, errOut)
	}
	var ts []taskJSON
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		n.t.Fatal(err)
	}
	e := expected{vip: vip, tasks: map[string]bool{}}
	addrOf := map[string]string{}
	for _, node := range n.nodes {
		addrOf[node.id] = node.ip
	}
	seen := map[string]bool{}
	for _, x := range running(n.t, ts) {
		e.tasks[x.ID] = true
		var hostPort uint16
		if _, err := fmt.Sscanf(x.Ports, "%d->", &hostPort); err != nil {
			n.t.Fatalf("task %s ports %q: %v", x.ID, x.Ports, err)
		}
		e.srv = append(e.srv, srvAnswer{Target: strings.ToLower(x.Node), Addr: addrOf[x.Node], Port: hostPort})
		if !seen[addrOf[x.Node]] {
			seen[addrOf[x.Node]] = true
			e.addrs = append(e.addrs, addrOf[x.Node])
		}
	}
	sort.Strings(e.addrs)
	slices.SortFunc(e.srv, func(a, b srvAnswer) int {
		if c := strings.Compare(a.Target, b.Target); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return e
}

// checkDNS compares node from's answers with e.
func (n *e2eNet) checkDNS(from int, svc string, e expected) error {
	v, err := n.dnsLookup(from, svc)
	if err != nil {
		return err
	}
	want := dnsView{VIP: []string{e.vip}, ZonedVIP: []string{e.vip}, TaskAddrs: e.addrs, SRV: e.srv}
	if fmt.Sprint(v) != fmt.Sprint(want) {
		return fmt.Errorf("node %d answers %+v, want %+v", from, v, want)
	}
	if err := n.nxdomain(from, "nosuch.swarmlet."); err != nil {
		return err
	}
	return n.nxdomain(from, "tasks.nosuch.")
}

// checkLB makes 20 requests to url from node from's namespace: every answer must
// come from a task in e and every task in e must answer.
func (n *e2eNet) checkLB(from int, url string, e expected) error {
	byTask, err := hits(n.nodes[from].ns, url, 20)
	if err != nil {
		return fmt.Errorf("from node %d to %s: %w", from, url, err)
	}
	for id := range byTask {
		if !e.tasks[id] {
			return fmt.Errorf("from node %d to %s: answer from task %s, not one of %v", from, url, id, e.tasks)
		}
	}
	if len(byTask) != len(e.tasks) {
		return fmt.Errorf("from node %d to %s: answers %v, want all of %v", from, url, byTask, e.tasks)
	}
	return nil
}

// waitAll waits until check passes for every node, returning how long it took.
func (n *e2eNet) waitAll(d time.Duration, what string, check func(i int) error) time.Duration {
	n.t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		var err error
		for i := 1; i <= len(n.nodes) && err == nil; i++ {
			err = check(i)
		}
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nftTables lists the nftables tables of namespace ns ("" is the root
// namespace, read only).
func (n *e2eNet) nftTables(ns string) string {
	n.t.Helper()
	var out []byte
	var err error
	if ns == "" {
		out, err = exec.Command("nft", "list", "tables").CombinedOutput()
	} else {
		var s string
		s, err = n.exec(ns, "nft", "list", "tables")
		out = []byte(s)
	}
	if err != nil {
		n.t.Fatalf("nft list tables in %q: %v: %s", ns, err, out)
	}
	return string(out)
}

// TestNetnsDiscoveryAndLB: 3 nodes in their own namespaces; a 2-replica service
// kept off node 3; DNS (VIP, tasks, SRV, NXDOMAIN) and the nftables balancer
// (VIP from every node, the published port on the node without a task) checked
// from inside every namespace, through scale up and down and rm.
func TestNetnsDiscoveryAndLB(t *testing.T) {
	requireNetnsTools(t)
	n := newE2ENet(t, 3)

	n.start(1, "")
	wtok := strings.TrimSpace(n.mustCLI(1, "join-token", "-q", "worker"))
	n.start(2, wtok)
	n.start(3, wtok)
	waitFor(t, 15*time.Second, "3 ready nodes", func() bool {
		out, _, err := n.cli(1, "node", "ls", "--format", "json")
		var ns []nodeJSON
		if err != nil || json.Unmarshal([]byte(out), &ns) != nil || len(ns) != 3 {
			return false
		}
		for _, x := range ns {
			if x.Status != "ready" {
				return false
			}
			for _, node := range n.nodes {
				if node.ip == x.Addr {
					node.id = x.ID
				}
			}
		}
		return true
	})
	n.mustCLI(1, "node", "update", "--availability", "drain", n.nodes[3].id)

	// Each node's balancer owns a table named after the node, in its namespace only.
	root := n.nftTables("")
	for _, node := range n.nodes {
		table := "swarmlet_" + node.id
		if strings.Contains(root, table) {
			t.Fatalf("table %s is in the root namespace:\n%s", table, root)
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("table %s in node %d's namespace", table, node.i), func() bool {
			return strings.Contains(n.nftTables(node.ns), "table ip "+table)
		})
		sysctl := func(sc string) string {
			var b []byte
			err := inNS(node.ns, func() (err error) {
				// /proc/sys/net shows the namespace of the thread that opens it.
				b, err = os.ReadFile("/proc/sys/net/" + sc)
				return err
			})
			if err != nil {
				return err.Error()
			}
			return strings.TrimSpace(string(b))
		}
		// route_localnet only on the interface towards the other nodes, not on
		// all of them; forwarding for the routing mesh.
		waitFor(t, 5*time.Second, fmt.Sprintf("node %d: route_localnet on eth0", node.i), func() bool {
			return sysctl("ipv4/conf/eth0/route_localnet") == "1"
		})
		for sc, want := range map[string]string{"ipv4/conf/all/route_localnet": "0", "ipv4/ip_forward": "1"} {
			if got := sysctl(sc); got != want {
				t.Fatalf("node %d: %s = %q, want %s for the nftables balancer", node.i, sc, got, want)
			}
		}
	}

	n.mustCLI(1, "service", "create", "--name", "web", "--replicas", "2", "-p", "8080:80", "--restart-delay", "0s", whoamiBin)
	out := n.mustCLI(1, "service", "ls", "--format", "json")
	var svcs []struct {
		Name string `json:"name"`
		VIP  string `json:"vip"`
	}
	if err := json.Unmarshal([]byte(out), &svcs); err != nil || len(svcs) != 1 || svcs[0].VIP == "" {
		t.Fatalf("service ls: %v %s", err, out)
	}
	vip := svcs[0].VIP
	if ip, err := netip.ParseAddr(vip); err != nil || !netip.MustParsePrefix("10.43.0.0/16").Contains(ip) {
		t.Fatalf("VIP %q is not of the default service range 10.43.0.0/16", vip)
	}
	e := n.expect("web", vip)
	if len(e.tasks) != 2 || len(e.addrs) != 2 {
		t.Fatalf("want 2 tasks on nodes 1 and 2, got %+v", e)
	}
	for _, s := range e.srv {
		if s.Target == n.nodes[3].id {
			t.Fatalf("task on drained node 3: %+v", e)
		}
	}
	vipURL := "http://" + net.JoinHostPort(vip, "80") + "/"
	meshURL := "http://" + net.JoinHostPort(n.nodes[3].ip, "8080") + "/"

	took := n.waitAll(3*time.Second, "DNS after create", func(i int) error { return n.checkDNS(i, "web", e) })
	t.Logf("DNS on all nodes agreed %s after create returned", took)
	n.waitAll(3*time.Second, "VIP after create", func(i int) error { return n.checkLB(i, vipURL, e) })
	// Routing mesh: node 3 runs no task, yet its published port answers, from
	// other nodes and from node 3 itself, spread over the tasks elsewhere.
	n.waitAll(3*time.Second, "published port of node 3", func(i int) error { return n.checkLB(i, meshURL, e) })
	// A published port on a node with a task balances over all tasks too.
	n.waitAll(3*time.Second, "published port of node 1", func(i int) error {
		return n.checkLB(i, "http://"+net.JoinHostPort(n.nodes[1].ip, "8080")+"/", e)
	})

	// Scale up and back down: DNS and the balancers follow within about 2 s.
	for _, replicas := range []int{3, 2} {
		scaleStart := time.Now()
		n.mustCLI(1, "service", "scale", fmt.Sprintf("web=%d", replicas))
		scaleTook := time.Since(scaleStart)
		e = n.expect("web", vip)
		if len(e.tasks) != replicas {
			t.Fatalf("after scale to %d (which waits): %+v", replicas, e)
		}
		dnsTook := n.waitAll(2*time.Second, fmt.Sprintf("DNS after scale to %d", replicas), func(i int) error { return n.checkDNS(i, "web", e) })
		lbTook := n.waitAll(2*time.Second, fmt.Sprintf("VIP after scale to %d", replicas), func(i int) error { return n.checkLB(i, vipURL, e) })
		n.waitAll(2*time.Second, fmt.Sprintf("mesh after scale to %d", replicas), func(i int) error { return n.checkLB(i, meshURL, e) })
		t.Logf("scale to %d: converged in %s; then DNS followed on all nodes in %s, the VIP in a further %s",
			replicas, scaleTook.Round(time.Millisecond), dnsTook.Round(time.Millisecond), lbTook.Round(time.Millisecond))
	}

	// The kernel's rules outlive a plain stop of the daemon, so node 3's
	// published port keeps answering; the restarted daemon adopts its table
	// without duplicating anything.
	rules := func(i int) string {
		out, err := n.exec(n.nodes[i].ns, "nft", "list", "table", "ip", "swarmlet_"+n.nodes[i].id)
		if err != nil {
			t.Fatalf("node %d: nft list table: %v: %s", i, err, out)
		}
		return out
	}
	before := rules(3)
	for _, chain := range []string{"chain fe-tcp-" + vip + "-80 ", "chain fe-tcp-" + n.nodes[3].ip + "-8080 "} {
		if strings.Count(before, chain) != 1 {
			t.Fatalf("node 3: want one %q in:\n%s", chain, before)
		}
	}
	_ = n.nodes[3].cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.nodes[3].exited:
	case <-time.After(15 * time.Second):
		t.Fatal("node 3 did not stop on SIGTERM")
	}
	syncs := strings.Count(n.nodes[3].logString(), "nftables synced")
	if err := n.checkLB(1, meshURL, e); err != nil {
		t.Fatalf("published port of node 3 with its daemon stopped: %v", err)
	}
	n.start(3, wtok)
	// DNS and the balancer get each table in one call: DNS first.
	waitFor(t, 5*time.Second, "node 3's DNS after restart", func() bool { return n.checkDNS(3, "web", e) == nil })
	n.waitAll(2*time.Second, "VIP after node 3's restart", func(i int) error { return n.checkLB(i, vipURL, e) })
	if err := n.checkLB(1, meshURL, e); err != nil {
		t.Fatalf("published port of node 3 after its restart: %v", err)
	}
	if after := rules(3); after != before {
		t.Fatalf("node 3's table changed across a restart:\n%s\nnow:\n%s", before, after)
	}
	if strings.Count(n.nodes[3].logString(), "nftables synced") != syncs {
		t.Fatalf("the restarted node 3 rewrote rules it should have adopted:\n%s", tail(n.nodes[3].logString(), 10))
	}

	n.mustCLI(1, "service", "rm", "web")
	waitFor(t, 10*time.Second, "no task process left after rm", func() bool { return taskProcesses("web") == 0 })
	n.waitAll(3*time.Second, "DNS after rm", func(i int) error {
		if err := n.nxdomain(i, "web.swarmlet."); err != nil {
			return err
		}
		return n.nxdomain(i, "tasks.web.")
	})
	n.waitAll(3*time.Second, "VIP rules gone after rm", func(i int) error {
		if out := rules(i); strings.Contains(out, vip) || strings.Contains(out, "chain fe-") {
			return fmt.Errorf("node %d still has rules for web:\n%s", i, out)
		}
		return nil
	})

	// A worker that leaves removes its table; a plain stop keeps it (traffic to
	// running tasks survives a daemon restart), and deleting the namespace
	// takes it away: nothing was ever in the root namespace.
	n.mustCLI(3, "leave")
	select {
	case <-n.nodes[3].exited:
	case <-time.After(15 * time.Second):
		t.Fatal("node 3 did not stop after leave")
	}
	if out := n.nftTables(n.nodes[3].ns); strings.Contains(out, "swarmlet_") {
		t.Fatalf("node 3 left, yet its namespace still has:\n%s", out)
	}
	for _, i := range []int{2, 1} {
		_ = n.nodes[i].cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.nodes[i].exited:
		case <-time.After(15 * time.Second):
			t.Fatalf("node %d did not stop on SIGTERM", i)
		}
	}
	root = n.nftTables("")
	for _, node := range n.nodes {
		if strings.Contains(root, "swarmlet_"+node.id) {
			t.Fatalf("table swarmlet_%s is in the root namespace:\n%s", node.id, root)
		}
	}
}
