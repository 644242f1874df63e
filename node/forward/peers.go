package forward

import (
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/node/client"
)

// Peers caches API clients to other nodes, keyed by API address; every client
// dials from this node's advertise address and speaks for this node.
type Peers struct {
	local string
	self  string
	mu    sync.Mutex
	m     map[string]*client.Client
}

// NewPeers makes a cache whose clients dial from local and name node self.
func NewPeers(local, self string) *Peers {
	return &Peers{local: local, self: self, m: map[string]*client.Client{}}
}

// Get returns the client for a node's API address.
func (p *Peers) Get(addr string) *client.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.m[addr]; ok {
		return c
	}
	c, _ := client.New("tcp://"+addr, client.Options{LocalAddr: p.local, NodeID: p.self, Timeout: 40 * time.Second})
	p.m[addr] = c
	return c
}
