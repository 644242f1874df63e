package node

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dnsdisco"
	"github.com/swarmlet/swarmlet/lb"
	"github.com/swarmlet/swarmlet/node/discovery"
	"github.com/swarmlet/swarmlet/node/engine"
	"github.com/swarmlet/swarmlet/node/engine/docker"
	"github.com/swarmlet/swarmlet/node/engine/process"
	"github.com/swarmlet/swarmlet/node/images"
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

	feeder *discovery.Feeder
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
	d.cfg.Out("engine: %s\n", kind)
	dnsAddr := ""
	if d.cfg.DNSPort > 0 {
		dnsAddr = net.JoinHostPort(d.cfg.AdvertiseAddr, strconv.Itoa(d.cfg.DNSPort))
	}
	ecfg := engine.Config{NodeID: d.id.NodeID, NodeAddr: d.cfg.AdvertiseAddr, DNS: dnsAddr, DataDir: filepath.Join(d.cfg.DataDir, "engine")}
	var (
		eng engine.Engine
		err error
	)
	switch kind {
	case "docker":
		eng, err = docker.New(ecfg, d.log.With("component", "engine"))
	default:
		eng, err = process.New(ecfg, d.log.With("component", "engine"))
	}
	if err != nil {
		return fmt.Errorf("start %s engine: %w", kind, err)
	}
	p := &nodeParts{engine: eng}
	d.parts = p
	d.startImages(p)
	if dnsAddr != "" {
		ups := d.cfg.DNSUpstreams
		if len(ups) == 0 {
			ups, _ = dnsdisco.UpstreamsFromResolvConf("/etc/resolv.conf", dnsAddr)
		}
		p.dns = dnsdisco.New(dnsdisco.Config{Addr: dnsAddr, Upstreams: ups, Logger: d.log.With("component", "dns")})
		if err := p.dns.Start(); err != nil {
			return fmt.Errorf("start DNS on %s: %w (use --dns-port to pick another port)", dnsAddr, err)
		}
	}
	if d.cfg.LB != "none" {
		// Several nodes may share one host (and so one netfilter): each owns a table.
		bal, err := lb.New(d.cfg.LB, lb.Config{Logger: d.log.With("component", "lb"), TableName: "swarmlet_" + d.id.NodeID})
		if err != nil {
			return fmt.Errorf("start load balancer: %w", err)
		}
		p.balancer = bal
		if bal.Name() == lb.KindNftables {
			if err := lb.EnableRouteLocalnet(); err != nil {
				d.log.Warn("route_localnet", "err", err)
			}
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
	p.feeder = discovery.New(p.dns, p.balancer, d.cfg.AdvertiseAddr, d.log.With("component", "discovery"))
	p.agent = worker.New(worker.Config{NodeID: d.id.NodeID, Engine: eng, Manager: d, Logger: d.log.With("component", "worker"), Images: p.preparer(),
		OnAssignments: func(as api.Assignments) {
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
	_ = p.engine.Close()
}
