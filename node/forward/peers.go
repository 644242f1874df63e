package forward

import (
	"crypto/tls"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/node/client"
)

// Peers caches API clients to other nodes, keyed by API address; every client
// dials from this node's advertise address and shows this node's certificate, so
// the callee knows who calls from the certificate. The clients keep connections
// alive: the handshake is paid once per connection.
type Peers struct {
	local   string
	anyNode *tls.Config
	manager *tls.Config
	mu      sync.Mutex
	m       map[peerKey]*client.Client
}

type peerKey struct {
	addr    string
	manager bool
}

// NewPeers makes a cache whose clients dial from local. anyNode accepts any node
// of the cluster as the server, manager only a manager (for what only managers may
// answer: sessions, writes, reads of the cluster state).
func NewPeers(local string, anyNode, manager *tls.Config) *Peers {
	return &Peers{local: local, anyNode: anyNode, manager: manager, m: map[peerKey]*client.Client{}}
}

// Get returns a client for a node's API address; the server may be any node.
func (p *Peers) Get(addr string) *client.Client { return p.get(peerKey{addr: addr}) }

// Manager returns a client for a manager's API address; a server that is not a
// manager of this cluster fails the handshake.
func (p *Peers) Manager(addr string) *client.Client { return p.get(peerKey{addr: addr, manager: true}) }

func (p *Peers) get(k peerKey) *client.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.m[k]; ok {
		return c
	}
	cfg := p.anyNode
	if k.manager {
		cfg = p.manager
	}
	c, _ := client.New("tcp://"+k.addr, client.Options{LocalAddr: p.local, TLS: cfg, Timeout: 40 * time.Second})
	p.m[k] = c
	return c
}

// ManagerTLS is the client config that accepts only managers (the forwarding proxy's).
func (p *Peers) ManagerTLS() *tls.Config { return p.manager }
