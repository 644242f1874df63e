package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestBedClusterNetwork: three hosts, each with its own dockerd and a swarmlet
// node inside its namespace (docker engine, nftables balancer, DNS on 53).
// From a client container on host 1, through its own resolver: `web` and
// `tasks.web` resolve, the VIP reaches web's tasks on all three hosts, every
// task address answers on its target port; the published port answers on a
// host without a task; scale and rm show in DNS and the VIP on every host; a
// host cut off drops out of DNS and the VIP within a bound and comes back
// when healed; daemon restarts keep container traffic flowing; leave removes
// what the node made on its host.
func TestBedClusterNetwork(t *testing.T) {
	c := newBedCluster(t, 3)
	c.up()
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "3", "-p", "8080:80", "--restart-delay", "0s", bedImage)
	// A client container on every host; the one on host 1 does most of the calling.
	c.mustCLI(1, "service", "create", "--name", "client", "--mode", "global", bedImage)
	c.mustCLI(1, "service", "create", "--name", "rr", "--endpoint-mode", "dnsrr", "--replicas", "2", bedImage)
	web := c.serving("web")
	onHost := map[int]bedTask{}
	for _, x := range web {
		onHost[c.hostOf(x.Node)] = x
	}
	if len(onHost) != 3 {
		t.Fatalf("web's 3 tasks are not on 3 hosts: %+v", web)
	}
	vip := c.vip("web")
	if a, err := netip.ParseAddr(vip); err != nil || !netip.MustParsePrefix("10.43.0.0/16").Contains(a) {
		t.Fatalf("VIP %q is not of the service range", vip)
	}
	// Every task has an address of its own node's subnet.
	for i, x := range onHost {
		sub := c.subnetOf(i)
		p, err := netip.ParsePrefix(sub)
		a, err2 := netip.ParseAddr(x.Addr)
		if err != nil || err2 != nil || !p.Contains(a) {
			t.Fatalf("task %s on host %d has address %q, not of the node's subnet %q", x.ID, i, x.Addr, sub)
		}
	}
	client := c.container(1, "client")
	in := func(args ...string) string {
		t.Helper()
		out, err := c.inContainer(1, client, args...)
		if err != nil {
			t.Fatalf("in the client container: whoami %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	t.Run("names resolve inside the container", func(t *testing.T) {
		for _, name := range []string{"web", "web.swarmlet"} {
			if got := strings.Fields(in("resolve", name)); !slices.Equal(got, []string{vip}) {
				t.Fatalf("%s resolves to %v, want the VIP %s", name, got, vip)
			}
		}
		got := strings.Fields(in("resolve", "tasks.web"))
		slices.Sort(got)
		if want := addrsOf(web); !slices.Equal(got, want) {
			t.Fatalf("tasks.web resolves to %v, want the tasks' addresses %v", got, want)
		}
	})
	t.Run("the VIP reaches tasks on every host", func(t *testing.T) {
		if err := sameTasks(answers(in("get", "http://web/", "30")), idsOf(web)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("every task address answers from every host's containers", func(t *testing.T) {
		rr := c.serving("rr")
		for i := range c.nodes {
			ctr := c.container(i, "client")
			for _, name := range []string{"tasks.web", "rr"} {
				want := web
				if name == "rr" {
					want = rr // dnsrr: the name answers the tasks' addresses
				}
				out, err := c.inContainer(i, ctr, "resolve", name)
				got := strings.Fields(out)
				slices.Sort(got)
				if err != nil || !slices.Equal(got, addrsOf(want)) {
					t.Fatalf("host %d: %s resolves to %v (%v), want %v", i, name, got, err, addrsOf(want))
				}
				for _, x := range want {
					out, err := c.inContainer(i, ctr, "get", "http://"+x.Addr+":80/")
					if err != nil || answers(out)[x.ID] != 1 {
						t.Fatalf("host %d: %s answered %q (%v), want task %s", i, x.Addr, out, err, x.ID)
					}
				}
			}
		}
	})
	t.Run("not an open resolver", func(t *testing.T) {
		// Names outside the zone are forwarded for the node's own host (the
		// upstream here is dead: SERVFAIL), refused to anyone else.
		if m, err := c.dnsFrom(1, 1, "example.org."); err != nil || m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("from host 1 itself: %v %v, want SERVFAIL from the dead upstream", m, err)
		}
		if m, err := c.dnsFrom(2, 1, "example.org."); err != nil || m.Rcode != dns.RcodeRefused {
			t.Fatalf("from host 2: %v %v, want REFUSED", m, err)
		}
		if m, err := c.dnsFrom(2, 1, "web.swarmlet."); err != nil || !slices.Equal(aRecords(m), []string{vip}) {
			t.Fatalf("cluster names from host 2: %v %v", m, err)
		}
	})
	t.Run("a service without published ports is called by name", func(t *testing.T) {
		// client publishes nothing: its VIP balances every port over its
		// containers, called here from one of them (a third of the calls
		// come back to the caller: a hairpin) and from a host.
		cl := idsOf(c.serving("client"))
		if err := sameTasks(answers(in("get", "http://client/", "30")), cl); err != nil {
			t.Fatalf("client calling its own name: %v", err)
		}
		got, err := c.hostGet(2, "http://"+c.vip("client")+"/", 30)
		if err == nil {
			err = sameTasks(got, cl)
		}
		if err != nil {
			t.Fatalf("client's VIP from host 2: %v", err)
		}
	})
	t.Run("hosts reach the VIP too", func(t *testing.T) {
		for i := range c.nodes {
			got, err := c.hostGet(i, "http://"+vip+"/", 30)
			if err == nil {
				err = sameTasks(got, idsOf(web))
			}
			if err != nil {
				t.Fatalf("from host %d: %v", i, err)
			}
		}
	})

	// Scale to 2: one host is left without a task; its published port still
	// answers, from a host and from the container; DNS and the VIP follow on
	// every host.
	c.mustCLI(1, "service", "scale", "web=2")
	web = c.serving("web")
	free := 0
	for i := range c.nodes {
		if !slices.ContainsFunc(web, func(x bedTask) bool { return c.hostOf(x.Node) == i }) {
			free = i
		}
	}
	if len(web) != 2 || free == 0 {
		t.Fatalf("after scale to 2: %+v", web)
	}
	checkEverywhere := func(what string, web []bedTask, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		waitFor(t, within, what, func() bool { return c.everywhere(vip, web) == nil })
		return time.Since(start)
	}
	took := checkEverywhere("DNS and the VIP on every host after scale to 2", web, 5*time.Second)
	t.Logf("scale to 2: DNS and VIP on every host agreed %s after scale returned", took.Round(time.Millisecond))
	mesh := fmt.Sprintf("http://%s:8080/", c.nodes[free].h.Addr)
	for i := range c.nodes {
		got, err := c.hostGet(i, mesh, 30)
		if err == nil {
			err = sameTasks(got, idsOf(web))
		}
		if err != nil {
			t.Fatalf("published port of host %d (no task there) from host %d: %v", free, i, err)
		}
	}
	if err := sameTasks(answers(in("get", mesh, "30")), idsOf(web)); err != nil {
		t.Fatalf("published port of host %d from the client container: %v", free, err)
	}

	// Back to 3, then host 2 is cut off: its endpoint leaves DNS and the VIP
	// on host 1 within a bound, and comes back once healed.
	c.mustCLI(1, "service", "scale", "web=3")
	web = c.serving("web")
	checkEverywhere("DNS and the VIP on every host after scale to 3", web, 5*time.Second)
	sub3old := c.subnetOf(3)
	var cut bedTask
	for _, x := range web {
		if c.hostOf(x.Node) == 2 {
			cut = x
		}
	}
	if cut.ID == "" {
		t.Fatalf("no task on host 2: %+v", web)
	}
	if err := c.nodes[2].h.Cut(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 15*time.Second, "host 2's task out of tasks.web and the VIP in the client container", func() bool {
		out, err := c.inContainer(1, client, "resolve", "tasks.web")
		if err != nil || strings.Contains(out, cut.Addr) {
			return false
		}
		got, err := c.inContainer(1, client, "get", "http://"+vip+"/", "10")
		return err == nil && answers(got)[cut.ID] == 0
	})
	t.Logf("host 2 cut off: its endpoint left DNS and the VIP in the client container after %s", time.Since(start).Round(time.Millisecond))
	if err := c.nodes[2].h.Heal(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, 40*time.Second, "three serving tasks, in DNS and behind the VIP everywhere, after the heal", func() bool {
		web = c.serving("web")
		return len(web) == 3 && c.everywhere(vip, web) == nil
	})
	t.Logf("host 2 healed: DNS and the VIP everywhere show 3 tasks again after %s", time.Since(start).Round(time.Millisecond))

	// Daemon restarts (a graceful one on the client's host, a kill -9 on
	// another) keep container traffic through the VIP flowing.
	t.Run("restarts keep traffic flowing", func(t *testing.T) {
		var wg sync.WaitGroup
		var loop string
		var loopErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop, loopErr = c.inContainer(1, client, "loop", "http://"+vip+"/", "8s")
		}()
		time.Sleep(time.Second)
		c.stop(1, syscall.SIGTERM)
		c.start(1, "")
		c.stop(3, syscall.SIGKILL)
		c.start(3, "x")
		wg.Wait()
		if loopErr != nil || !strings.Contains(loop, "failed=0 ") {
			t.Fatalf("client loop across the restarts: %q, %v", loop, loopErr)
		}
		t.Logf("client loop across two daemon restarts: %s", strings.TrimSpace(loop))
	})

	// A node removed while its daemon is down leaves its table, device,
	// container network and tasks on its host. A new node joining from that
	// host removes them (this cluster's, of a node that no longer exists) and
	// is given the freed subnet, which the old network would otherwise hold.
	t.Run("a new node cleans up after a removed one", func(t *testing.T) {
		old := c.nodes[3].id
		c.mustCLI(1, "service", "create", "--name", "pinned", "--constraint", "node.hostname==h3", bedImage)
		c.stop(3, syscall.SIGKILL)
		waitFor(t, 20*time.Second, "node 3 down", func() bool {
			ns, err := nodesOf(c, 1)
			return err == nil && slices.ContainsFunc(ns, func(n nodeJSON) bool { return n.ID == old && n.Status == "down" })
		})
		c.mustCLI(1, "node", "rm", old)
		if out, _ := c.nodes[3].h.Docker(t.Context(), "ps", "-q", "--filter", "label=swarmlet.node="+old); out == "" {
			t.Fatal("the removed node left no task running: the test proves nothing")
		}
		c.nodes[3].dataDir = filepath.Join(c.dir, "h3-again")
		c.start(3, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
		waitFor(t, 20*time.Second, "the new node 3 ready", func() bool {
			ns, err := nodesOf(c, 1)
			if err != nil || len(ns) != 3 {
				return false
			}
			for _, n := range ns {
				if n.Addr == c.nodes[3].h.Addr.String() && n.Status == "ready" {
					c.nodes[3].id = n.ID
					return true
				}
			}
			return false
		})
		if c.subnetOf(3) != sub3old {
			t.Logf("the new node got %s, not the freed %s", c.subnetOf(3), sub3old)
		}
		var state string
		deadline := time.Now().Add(20 * time.Second)
		for {
			tables := c.hostRun(3, "nft", "list", "tables")
			links := c.hostRun(3, "ip", "-d", "link", "show", "type", "vxlan")
			nets, _ := c.nodes[3].h.Docker(t.Context(), "network", "ls", "--format", "{{.Name}}")
			ctrs, _ := c.nodes[3].h.Docker(t.Context(), "ps", "-aq", "--filter", "label=swarmlet.node="+old)
			if !strings.Contains(tables, old) && !strings.Contains(links, "swl-"+old[:10]) && strings.Contains(links, "swl-"+c.nodes[3].id[:10]) &&
				!strings.Contains(nets, old) && strings.Contains(nets, "swarmlet-"+c.nodes[3].id) && ctrs == "" {
				break
			}
			state = fmt.Sprintf("tables:\n%s\nvxlan devices:\n%s\nnetworks:\n%s\nold containers: %q", tables, links, nets, ctrs)
			if time.Now().After(deadline) {
				t.Fatalf("the removed node %s's things still on host 3 (new node %s):\n%s", old, c.nodes[3].id, state)
			}
			time.Sleep(100 * time.Millisecond)
		}
		waitFor(t, 40*time.Second, "three serving tasks, in DNS and behind the VIP everywhere", func() bool {
			web = c.serving("web")
			return len(web) == 3 && c.everywhere(vip, web) == nil
		})
		// The pinned service's task runs again on the new node, on its network,
		// reached from the client container on host 1.
		waitFor(t, 30*time.Second, "pinned's task on the new node 3, reached from the client container", func() bool {
			p := c.serving("pinned")
			if len(p) != 1 || c.hostOf(p[0].Node) != 3 {
				return false
			}
			out, err := c.inContainer(1, client, "get", "http://"+p[0].Addr+"/")
			return err == nil && answers(out)[p[0].ID] == 1
		})
		c.mustCLI(1, "service", "rm", "pinned")
	})

	// rm: the name goes from DNS and the VIP stops answering, everywhere.
	c.mustCLI(1, "service", "rm", "web")
	waitFor(t, 10*time.Second, "web gone from DNS on every host", func() bool {
		for i := range c.nodes {
			for _, name := range []string{"web.swarmlet.", "tasks.web."} {
				if m, err := c.hostDNS(i, name); err != nil || m.Rcode != dns.RcodeNameError {
					return false
				}
			}
		}
		return true
	})
	for _, name := range []string{"web", "tasks.web"} {
		if out, err := c.inContainer(1, client, "resolve", name); err == nil {
			t.Fatalf("%s still resolves in the client container: %s", name, out)
		}
	}
	if out, err := c.inContainer(1, client, "get", "http://"+vip+"/"); err == nil {
		t.Fatalf("the removed service's VIP still answers: %s", out)
	}

	// leave removes what the node made on its host; the others forget its subnet.
	sub3 := c.subnetOf(3)
	c.mustCLI(3, "leave")
	select {
	case <-c.nodes[3].exited:
		c.nodes[3].cmd = nil
	case <-time.After(20 * time.Second):
		t.Fatal("node 3 did not stop after leave")
	}
	left := map[string]string{
		"ip -d link":                         c.hostRun(3, "ip", "-d", "link"),
		"iptables -S DOCKER-USER":            c.hostRun(3, "iptables", "-w", "5", "-S", "DOCKER-USER"),
		"iptables -t nat -S POSTROUTING":     c.hostRun(3, "iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING"),
		"nft list tables":                    c.hostRun(3, "nft", "list", "tables"),
		"ip route show table local proto 83": c.hostRun(3, "ip", "route", "show", "table", "local", "proto", "83"),
	}
	// Leave removes what this node made; what a removed node left is the
	// janitor's (checked above).
	if out, err := c.nodes[3].h.Docker(t.Context(), "network", "ls", "--format", "{{.Name}}"); err != nil || strings.Contains(out, "swarmlet-"+c.nodes[3].id) {
		t.Fatalf("host 3's container network after leave: %v\n%s", err, out)
	}
	for what, out := range left {
		if strings.Contains(out, "swarmlet") || strings.Contains(out, "swl-") || strings.Contains(out, "10.43.0.0/16") {
			t.Fatalf("host 3 after leave, %s:\n%s", what, out)
		}
	}
	waitFor(t, 10*time.Second, "host 1's overlay without node 3's subnet", func() bool {
		return !strings.Contains(c.hostRun(1, "ip", "route", "show", "proto", "83"), sub3)
	})
}

// everywhere checks, on every host, that the node's DNS answers tasks.web
// with web's task addresses and web with the VIP, and that the VIP from the
// host reaches exactly those tasks.
func (c *bedCluster) everywhere(vip string, web []bedTask) error {
	want := addrsOf(web)
	for i := range c.nodes {
		m, err := c.hostDNS(i, "tasks.web.")
		if err != nil {
			return fmt.Errorf("host %d: tasks.web: %w", i, err)
		}
		if got := aRecords(m); !slices.Equal(got, want) {
			return fmt.Errorf("host %d: tasks.web = %v, want %v", i, got, want)
		}
		m, err = c.hostDNS(i, "web.")
		if err != nil || !slices.Equal(aRecords(m), []string{vip}) {
			return fmt.Errorf("host %d: web = %v, %v", i, m, err)
		}
		got, err := c.hostGet(i, "http://"+vip+"/", 10*len(web))
		if err == nil {
			err = sameTasks(got, idsOf(web))
		}
		if err != nil {
			return fmt.Errorf("host %d: VIP: %w", i, err)
		}
	}
	return nil
}

func nodesOf(c *bedCluster, i int) ([]nodeJSON, error) {
	out, errOut, err := c.cli(i, "node", "ls", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, errOut)
	}
	var ns []nodeJSON
	return ns, json.Unmarshal([]byte(out), &ns)
}

func (c *bedCluster) subnetOf(i int) string {
	c.t.Helper()
	for _, l := range strings.Split(c.mustCLI(1, "node", "inspect", c.nodes[i].id), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), `"subnet": "`); ok {
			return strings.TrimSuffix(v, `",`)
		}
	}
	c.t.Fatalf("node %d has no subnet", i)
	return ""
}
