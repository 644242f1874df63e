package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dnsdisco"
	"github.com/swarmlet/swarmlet/lb"
	"github.com/swarmlet/swarmlet/node/clusternet"
	"github.com/swarmlet/swarmlet/node/discovery"
	"github.com/swarmlet/swarmlet/node/engine"
	"github.com/swarmlet/swarmlet/node/engine/docker"
	"github.com/swarmlet/swarmlet/node/engine/process"
	"github.com/swarmlet/swarmlet/node/images"
	"github.com/swarmlet/swarmlet/node/taskfiles"
	"github.com/swarmlet/swarmlet/node/worker"
)

// The parts every node runs whatever its role: the engine and worker agent, the
// DNS server and the load balancer, the last two fed by the worker's session.

type nodeParts struct {
	engine   engine.Engine
	agent    *worker.Agent
	dns      *dnsdisco.Server
	balancer lb.Balancer
	images   *images.Manager // nil unless the engine runs images (images.go)
	net      *clusternet.Net
	files    *taskfiles.Dir // tasks' secrets and configs, in memory

	feeder *discovery.Feeder
	// localnet turns route_localnet on only where a backend is reached (nftables).
	localnet *lb.LocalnetSetter
}

// chooseEngine resolves --engine auto: Docker when its socket answers.
func (d *Daemon) chooseEngine(ctx context.Context) (string, error) {
	switch d.cfg.Engine {
	case "auto":
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if docker.Available(cctx) {
			return "docker", nil
		}
		return "process", nil
	default:
		return d.cfg.Engine, nil
	}
}

func (d *Daemon) startParts(ctx context.Context) error {
	kind := d.engineKind
	advertise, err := netip.ParseAddr(d.cfg.AdvertiseAddr)
	if err != nil {
		return fmt.Errorf("advertise address %q: %w", d.cfg.AdvertiseAddr, err)
	}
	advertise = advertise.Unmap()
	d.cfg.Out("engine: %s\n", kind)
	dnsAddr := ""
	if d.cfg.DNSPort > 0 {
		dnsAddr = net.JoinHostPort(d.cfg.AdvertiseAddr, strconv.Itoa(d.cfg.DNSPort))
	}
	files := taskfiles.New(filepath.Join(d.cfg.DataDir, "taskfiles"), d.log.With("component", "taskfiles"))
	ecfg := engine.Config{NodeID: d.id.NodeID, NodeAddr: d.cfg.AdvertiseAddr, DNS: dnsAddr, DataDir: filepath.Join(d.cfg.DataDir, "engine"), FilesDir: files.Root()}
	var eng engine.Engine
	switch kind {
	case "docker":
		eng, err = docker.New(ecfg, d.log.With("component", "engine"))
	default:
		eng, err = process.New(ecfg, d.log.With("component", "engine"))
	}
	if err != nil {
		return fmt.Errorf("start %s engine: %w", kind, err)
	}
	p := &nodeParts{engine: eng, files: files}
	d.parts = p
	d.startImages(p)
	if dnsAddr != "" {
		ups := d.cfg.DNSUpstreams
		if len(ups) == 0 {
			ups, _ = dnsdisco.UpstreamsFromResolvConf("/etc/resolv.conf", dnsAddr)
		}
		// Names outside the zone are resolved for this host only until the
		// cluster network adds the node's containers (clusternet).
		p.dns = dnsdisco.New(dnsdisco.Config{Addr: dnsAddr, Upstreams: ups, Logger: d.log.With("component", "dns"), Observe: d.metrics.DNS,
			RecursionFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.PrefixFrom(advertise, 32)}})
		if err := p.dns.Start(); err != nil {
			return fmt.Errorf("start DNS on %s: %w (use --dns-port to pick another port)", dnsAddr, err)
		}
	}
	if d.cfg.LB != "none" {
		// Several nodes may share one host (and so one netfilter): each owns a table.
		lcfg := lb.Config{Logger: d.log.With("component", "lb"), TableName: clusternet.TableName(d.id.NodeID), Owner: d.id.ClusterID}
		lcfg.KeepSourceFrom, lcfg.KeepSourceVia = d.keepSource()
		bal, err := lb.New(d.cfg.LB, lcfg)
		if err != nil {
			return fmt.Errorf("start load balancer: %w", err)
		}
		p.balancer = bal
		if bal.Name() == lb.KindNftables {
			p.localnet = &lb.LocalnetSetter{}
		}
		if bal.Name() != lb.KindUserspace {
			// The routing mesh forwards published-port traffic to tasks on
			// other nodes (the userspace proxy re-dials instead).
			if changed, err := lb.EnableIPForward(); err != nil {
				d.log.Warn("ip_forward: published ports will not reach tasks on other nodes", "err", err)
			} else if changed {
				d.log.Info("enabled net.ipv4.ip_forward for the routing mesh")
			}
		}
	}
	if p.net, err = d.newClusterNet(eng, p.dns); err != nil {
		return err
	}
	d.goBG(func() { p.net.Run(ctx) })
	p.feeder = discovery.New(p.dns, p.balancer, d.cfg.AdvertiseAddr, d.log.With("component", "discovery"))
	p.feeder.Observe = lbObserved(d.metrics)
	p.agent = worker.New(worker.Config{NodeID: d.id.NodeID, NodeHostname: d.cfg.Hostname, Engine: eng, Manager: d, Logger: d.log.With("component", "worker"), Images: p.preparer(), Files: files,
		OnAssignments: func(as api.Assignments) {
			// The container network first: the worker starts this answer's
			// tasks right after, and they join it.
			p.net.Apply(ctx, as)
			d.followSession(as)
			p.routeLocalnet(d, as)
			p.feeder.Apply(ctx, as)
			d.followRole(ctx, as)
			d.rememberManagers(as)
		}})
	return nil
}

func (d *Daemon) stopParts() {
	p := d.parts
	if p == nil {
		return
	}
	if p.dns != nil {
		_ = p.dns.Close()
	}
	if p.net != nil {
		// Left in place on a plain stop, like the balancer's rules; a leave
		// (tasks already stopped) removes it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.net.Close(ctx, d.left); err != nil {
			d.log.Warn("cluster network", "err", err)
		}
		cancel()
	}
	if p.balancer != nil {
		// Kernel rules stay on a plain stop, so traffic to running tasks keeps
		// flowing across a daemon restart; 'leave' removes them.
		if d.left {
			_ = p.balancer.Close()
		}
	}
	if p.images != nil {
		p.images.Close()
	}
	if d.left {
		// The tasks are stopped: their files go, and the tmpfs with them. A
		// plain stop keeps both for the tasks that run on.
		if err := p.files.Close(); err != nil {
			d.log.Warn("task files", "err", err)
		}
	}
	_ = p.engine.Close()
}

// routeLocalnet turns route_localnet on for the interfaces towards the backends of
// the session's endpoint table, before the balancer sends traffic there.
func (p *nodeParts) routeLocalnet(d *Daemon, as api.Assignments) {
	if p.localnet == nil {
		return
	}
	var addrs []netip.Addr
	for _, se := range as.Endpoints {
		for _, e := range se.Tasks {
			for _, s := range []string{e.Addr, e.NodeIP} {
				if a, err := netip.ParseAddr(s); err == nil {
					addrs = append(addrs, a)
				}
			}
		}
	}
	for _, n := range as.Nodes {
		if a, err := netip.ParseAddr(n.Addr); err == nil {
			addrs = append(addrs, a)
		}
	}
	changed, err := p.localnet.For(addrs)
	if err != nil {
		d.log.Warn("route_localnet", "err", err)
	}
	if len(changed) > 0 {
		d.log.Info("route_localnet enabled for the balancer's backends", "interfaces", changed)
	}
}
