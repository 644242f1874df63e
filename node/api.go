package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/node/forward"
	"github.com/swarmlet/swarmlet/node/httpapi"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/node/ui"
	"github.com/swarmlet/swarmlet/raftstore"
)

// The API's listeners, and what the API asks of the node (httpapi.Node).

func (d *Daemon) newRouter() *forward.Router {
	return forward.New(forward.Config{
		Self: d.id.NodeID, AdvertiseAddr: d.cfg.AdvertiseAddr,
		Store: d.currentStore, Leadership: &d.leadership, Peers: d.peers,
		Managers: d.managerAPIAddrs, VotersAlive: d.votersAlive,
		RaftToAPI: func(raftAddr string) string {
			host, port, err := net.SplitHostPort(raftAddr)
			if err != nil {
				return ""
			}
			p, _ := strconv.Atoi(port)
			return net.JoinHostPort(host, strconv.Itoa(p-offsetRaft+offsetAPI))
		},
	})
}

func (d *Daemon) currentStore() *raftstore.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.store
}

func (d *Daemon) startAPI() error {
	srv := httpapi.New(httpapi.Config{Node: apiNode{d}, Router: d.router, Peers: d.peers, Logger: d.log.With("component", "api"), Version: Version,
		Images: d.imageHost(), AdvertiseAddr: d.cfg.AdvertiseAddr,
		Metrics: d.metrics.Handler(), ObserveRequest: d.metrics.Request, ObserveSession: d.metrics.Session, UI: ui.Handler("/ui/")})

	sock := d.cfg.socketPath()
	_ = os.Remove(sock) // a stale socket of a dead daemon; the data-dir lock says none runs
	uln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		uln.Close()
		return fmt.Errorf("chmod %s: %w", sock, err)
	}
	tln, err := net.Listen("tcp", d.cfg.apiAddr())
	if err != nil {
		uln.Close()
		return fmt.Errorf("listen on %s: %w (is another node using port %d on %s?)", d.cfg.apiAddr(), err, d.cfg.PortBase, d.cfg.AdvertiseAddr)
	}
	// TCP is mutual TLS only: a client without a certificate of the cluster gets a
	// TLS alert, never an answer (the join protocol aside, trust.go).
	secure := pki.NewListener(tln, d.trust.apiServerConfig(), pki.ListenerOptions{
		Refused: func(remote net.Addr, err error) {
			d.log.Debug("API connection refused", "from", remote.String(), "err", err)
		},
	})
	d.servers = append(d.servers, srv.Serve(uln, httpapi.ServeOptions{Socket: true}),
		srv.Serve(secure, httpapi.ServeOptions{ConnState: d.apiConnState}))
	return nil
}

// apiNode is the daemon as the API sees it.
type apiNode struct{ d *Daemon }

func (n apiNode) ID() string { return n.d.id.NodeID }

func (n apiNode) Info(st *raftstore.Store) api.Info {
	d := n.d
	d.mu.Lock()
	id := *d.id
	d.mu.Unlock()
	info := api.Info{NodeID: id.NodeID, Hostname: d.cfg.Hostname, Addr: d.cfg.AdvertiseAddr, Role: id.Role,
		ClusterID: id.ClusterID, Engine: d.engineName(), LB: d.cfg.LB, DataDir: d.cfg.DataDir, Version: Version}
	if d.gossip != nil {
		info.GossipAlive = d.gossip.NumAlive()
	}
	if d.cfg.DNSPort > 0 {
		info.DNSAddr = fmt.Sprintf("%s:%d", d.cfg.AdvertiseAddr, d.cfg.DNSPort)
	}
	if st == nil {
		return info
	}
	snap := st.Snapshot()
	info.LeaderID, _ = st.Leader()
	info.IsLeader = st.IsLeader()
	info.RaftIndex, info.RaftTerm = snap.Index(), st.Term()
	info.Nodes, info.Services, info.Tasks = len(snap.Nodes()), len(snap.Services()), len(snap.Tasks())
	voters, _ := st.Voters()
	info.Managers = len(voters)
	if d.gossip != nil {
		for _, m := range d.gossip.Members() {
			if _, ok := voters[m.Name]; ok && m.State == gossip.Alive {
				info.ManagersUp++
			}
		}
	}
	return info
}

func (n apiNode) Leave(ctx context.Context) error {
	if err := n.d.leave(ctx); err != nil {
		return err
	}
	go func() {
		select {
		case <-n.d.leaving:
		default:
			close(n.d.leaving)
		}
	}()
	return nil
}

func (n apiNode) TaskLogs(ctx context.Context, taskID string, opt api.LogOptions, w io.Writer) error {
	if n.d.parts == nil {
		return fmt.Errorf("no engine on this node: %w", api.ErrInvalid)
	}
	return n.d.parts.agent.Logs(ctx, taskID, opt, w)
}

func (n apiNode) Dispatcher() *dispatcher.Dispatcher { return n.d.dispatcher.Load() }

func (n apiNode) MembersChanged() { n.d.nudgeMembers() }

func (n apiNode) RoleOf(nodeID string, certRole api.NodeRole) api.NodeRole {
	return n.d.roleOf(nodeID, certRole)
}

func (d *Daemon) nudgeMembers() {
	select {
	case d.memberChanged <- struct{}{}:
	default:
	}
}
