// Package discovery keeps this node's DNS server and load balancer in step with
// the endpoint table its worker session receives: it turns the session's view into
// the plain tables those leaves take, and applies them.
package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dnsdisco"
	"github.com/swarmlet/swarmlet/lb"
)

// Feeder applies endpoint tables to a DNS server and a balancer (either may be nil).
type Feeder struct {
	dns      *dnsdisco.Server
	balancer lb.Balancer
	nodeAddr string
	log      *slog.Logger

	mu     sync.Mutex
	lbLast string
	// lbErr is the last failure logged: a failure that persists (a VIP the
	// host cannot bind) is retried on every change, but logged once.
	lbErr string

	// Observe, if set, is told of each programming of the balancer: how long it
	// took, whether it failed, and the table (metrics).
	Observe func(t lb.Table, d time.Duration, err error)
}

// New makes a feeder for this node (nodeAddr: where published ports listen).
func New(dns *dnsdisco.Server, balancer lb.Balancer, nodeAddr string, log *slog.Logger) *Feeder {
	return &Feeder{dns: dns, balancer: balancer, nodeAddr: nodeAddr, log: log}
}

// Apply hands DNS and the load balancer the tables of as.
func (f *Feeder) Apply(ctx context.Context, as api.Assignments) {
	if f.dns != nil {
		f.dns.SetTable(DNSTable(as))
	}
	if f.balancer == nil {
		return
	}
	t := LBTable(as, f.nodeAddr, f.balancer.Name() == lb.KindNftables)
	key := fmt.Sprint(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if key == f.lbLast {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	err := f.balancer.Sync(sctx, t)
	if f.Observe != nil {
		f.Observe(t, time.Since(start), err)
	}
	if err != nil {
		// Not recorded as applied: the next assignments retry it even if the
		// table is the same (Sync is idempotent).
		if err.Error() != f.lbErr {
			f.log.Warn("lb sync", "err", err)
			f.lbErr = err.Error()
		}
		return
	}
	if f.lbErr != "" {
		f.log.Info("lb synced after failures")
		f.lbErr = ""
	}
	f.lbLast = key
}

// DNSTable is the record table of the session's endpoints: a VIP per vip-mode
// service, and each serving task's address (its node's when it has none of its own);
// and the scopes of this node's stack tasks (scopes.go).
func DNSTable(as api.Assignments) dnsdisco.Table {
	t := dnsdisco.Table{Services: map[string]dnsdisco.Service{}, Nodes: map[string]net.IP{}, Scopes: stackScopes(as)}
	for _, n := range as.Nodes {
		t.Nodes[n.ID] = net.ParseIP(n.Addr)
	}
	for _, se := range as.Endpoints {
		s := dnsdisco.Service{}
		if se.EndpointMode == api.EndpointVIP && se.VIP != "" {
			s.VIP = net.ParseIP(se.VIP)
		}
		for _, e := range se.Tasks {
			task := dnsdisco.Task{Addr: net.ParseIP(e.Addr), Node: e.NodeID}
			if task.Addr == nil {
				task.Addr = net.ParseIP(e.NodeIP)
			}
			for _, pb := range e.Ports {
				task.Ports = append(task.Ports, dnsdisco.Port{Proto: pb.Protocol, Target: pb.TargetPort, HostPort: pb.HostPort})
			}
			s.Tasks = append(s.Tasks, task)
		}
		t.Services[strings.ToLower(se.Service)] = s
	}
	return t
}

// LBTable maps VIP:target and every ingress-published port on this node's address
// to the tasks: a container on the cluster network directly (its address and the
// target port, routable from every node), anything else (process tasks, a
// container on Docker's default bridge) through its host port on its node. With
// everyPort (the nftables balancer), a VIP also balances every other port over
// its tasks that are containers on the cluster network, as Docker Swarm's VIPs
// do: a service needs no published port to be called by name.
func LBTable(as api.Assignments, nodeAddr string, everyPort bool) lb.Table {
	var t lb.Table
	subnets := map[string]netip.Prefix{}
	for _, n := range as.Nodes {
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			subnets[n.ID] = p
		}
	}
	for _, se := range as.Endpoints {
		if everyPort && se.EndpointMode == api.EndpointVIP && se.VIP != "" {
			var ctrs []lb.Backend
			for _, e := range se.Tasks {
				if a, err := netip.ParseAddr(e.Addr); err == nil && subnets[e.NodeID].Contains(a) {
					ctrs = append(ctrs, lb.Backend{IP: net.ParseIP(e.Addr)})
				}
			}
			if len(ctrs) > 0 {
				for _, proto := range []string{"tcp", "udp"} {
					t.Frontends = append(t.Frontends, lb.Frontend{Service: se.Service, IP: net.ParseIP(se.VIP), Proto: proto, Backends: ctrs})
				}
			}
		}
		for _, pc := range se.Ports {
			var backends []lb.Backend
			for _, e := range se.Tasks {
				if a, err := netip.ParseAddr(e.Addr); err == nil && subnets[e.NodeID].Contains(a) {
					backends = append(backends, lb.Backend{IP: net.ParseIP(e.Addr), Port: pc.TargetPort})
					continue
				}
				for _, pb := range e.Ports {
					if pb.TargetPort == pc.TargetPort && pb.Protocol == pc.Protocol && pb.HostPort > 0 {
						backends = append(backends, lb.Backend{IP: net.ParseIP(e.NodeIP), Port: pb.HostPort})
					}
				}
			}
			if se.EndpointMode == api.EndpointVIP && se.VIP != "" {
				t.Frontends = append(t.Frontends, lb.Frontend{Service: se.Service, IP: net.ParseIP(se.VIP), Port: pc.TargetPort, Proto: pc.Protocol, Backends: backends})
			}
			if pc.PublishMode == api.PublishIngress && pc.PublishedPort > 0 {
				t.Frontends = append(t.Frontends, lb.Frontend{Service: se.Service, IP: net.ParseIP(nodeAddr), Port: pc.PublishedPort, Proto: pc.Protocol, Backends: backends})
			}
		}
	}
	return t
}
