package node

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
)

func (d *Daemon) gossipMeta() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[string]string{
		"role": string(d.id.Role),
		"api":  strconv.Itoa(d.cfg.PortBase + offsetAPI),
		"raft": "0",
	}
	if d.store != nil {
		m["raft"] = "1"
	}
	return m
}

func (d *Daemon) startGossip() error {
	g, err := gossip.Start(gossip.Config{
		Name: d.id.NodeID, BindAddr: d.cfg.AdvertiseAddr, BindPort: d.cfg.gossipPort(),
		Meta: d.gossipMeta(), Logger: d.log.With("component", "gossip"),
		// Encrypted and authenticated both ways with the cluster's keyring (kept in
		// Raft, followed through follow.go): a member without the key can neither
		// join nor be heard.
		Keys: d.gossipKeys,
	})
	if err != nil {
		return fmt.Errorf("start gossip on %s:%d: %w", d.cfg.AdvertiseAddr, d.cfg.gossipPort(), err)
	}
	d.gossip = g
	d.gossipStarted = time.Now()
	d.goBG(d.pumpGossipEvents)
	var peers []string
	for _, m := range d.id.Managers {
		if m.ID != d.id.NodeID {
			peers = append(peers, net.JoinHostPort(m.Addr, strconv.Itoa(m.GossipPort)))
		}
	}
	if len(peers) > 0 {
		// Peers may be down too (a whole-cluster restart); gossip heals as they return.
		if _, err := g.Join(peers); err != nil {
			d.log.Warn("gossip join", "peers", peers, "err", err)
			d.goBG(func() { d.retryGossipJoin(peers) })
		}
	}
	return nil
}

// pumpGossipEvents is the one reader of gossip events; it wakes the leader's
// member reconciliation.
func (d *Daemon) pumpGossipEvents() {
	for {
		select {
		case <-d.stopped:
			return
		case ev, ok := <-d.gossip.Events():
			if !ok {
				return
			}
			d.log.Info("gossip event", "kind", ev.Kind.String(), "member", ev.Member.Name, "addr", ev.Member.Addr)
			select {
			case d.memberChanged <- struct{}{}:
			default:
			}
		}
	}
}

func (d *Daemon) retryGossipJoin(peers []string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.stopped:
			return
		case <-t.C:
		}
		if d.gossip.NumAlive() > 1 {
			return
		}
		if _, err := d.gossip.Join(peers); err == nil {
			return
		}
	}
}

// managerAPIAddrs lists the API addresses of the other managers this node knows
// of: those gossip sees alive first, then those its identity remembers.
func (d *Daemon) managerAPIAddrs() []string {
	var addrs []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if d.gossip != nil {
		for _, m := range d.gossip.Members() {
			if m.Meta["role"] == string(api.RoleManager) && m.State == gossip.Alive && m.Name != d.id.NodeID {
				add(net.JoinHostPort(m.Addr, m.Meta["api"]))
			}
		}
	}
	d.mu.Lock()
	for _, m := range d.id.Managers {
		if m.ID != d.id.NodeID {
			add(APIAddr(&m))
		}
	}
	d.mu.Unlock()
	return addrs
}

// votersAlive counts the voters gossip sees alive.
func (d *Daemon) votersAlive(voters map[string]string) int {
	alive := 0
	if d.gossip == nil {
		return 0
	}
	for _, m := range d.gossip.Members() {
		if _, ok := voters[m.Name]; ok && m.State == gossip.Alive {
			alive++
		}
	}
	return alive
}
