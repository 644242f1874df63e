package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/authn"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Kind says where a request is served.
type Kind int

const (
	Local   Kind = iota // this node answers from itself (info, local logs, leave)
	Read                // the leader answers, after confirming it still leads (?stale: any manager)
	Write               // the leader answers
	Session             // the leader answers from its live state; blocking session reads
)

const (
	// ForwardedHeader marks a request a manager sent to the node it took for the
	// leader: that node must not forward it again.
	ForwardedHeader = "X-Swarmlet-Forwarded"
	// viaHeader marks a request sent on by a manager that knew no leader.
	viaHeader = "X-Swarmlet-Via"
)

// Handler serves a request with the store it was routed with (nil on a worker for
// Local requests). Handlers never fetch the store themselves: a demotion may drop
// it in between.
type Handler func(w http.ResponseWriter, r *http.Request, st *raftstore.Store)

// Config is what the router needs from the node.
type Config struct {
	Self          string // this node's ID
	AdvertiseAddr string // every forwarded connection leaves from here
	// Store is this node's Raft store, nil unless it is a manager.
	Store      func() *raftstore.Store
	Leadership *Leadership
	Peers      *Peers
	// Managers lists the API addresses of the other managers this node knows of,
	// those gossip sees alive first.
	Managers func() []string
	// VotersAlive counts the voters gossip sees alive.
	VotersAlive func(voters map[string]string) int
	// RaftToAPI maps a Raft address to the API address of the same node, for a
	// leader not yet in this node's node table.
	RaftToAPI func(raftAddr string) string
}

// Router routes API requests; see node/DESIGN.md.
type Router struct {
	cfg Config
	// tr carries every proxied request: mutual TLS to managers only, connections
	// kept alive so forwarding pays no handshake per request.
	tr *http.Transport
}

// New makes a router.
func New(cfg Config) *Router {
	return &Router{cfg: cfg, tr: &http.Transport{
		DialContext:     client.Dialer(cfg.AdvertiseAddr, 3*time.Second).DialContext,
		TLSClientConfig: cfg.Peers.ManagerTLS(), TLSHandshakeTimeout: 5 * time.Second,
		// A follower carries the sessions of every worker that reached it to the
		// leader: hundreds of long polls at once, each answered and sent again. With
		// fewer idle connections kept than sessions in flight, each answer closed
		// one and the next poll paid a TLS handshake (most of a leader's CPU at
		// 1,000 nodes); idle ones go after IdleConnTimeout anyway.
		MaxIdleConnsPerHost: 4096, IdleConnTimeout: 30 * time.Second,
	}}
}

// Store is this node's store now: nil on a worker.
func (rt *Router) Store() *raftstore.Store { return rt.cfg.Store() }

// Route wraps h so that it runs where kind says.
func (rt *Router) Route(kind Kind, h Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := rt.cfg.Store()
		switch kind {
		case Local:
			h(w, r, st)
			return
		case Session:
			switch {
			case st == nil:
				rt.forwardToManager(w, r)
			case st.IsLeader() && rt.cfg.Leadership.WaitReady(r.Context(), st):
				h(w, r, st)
			case r.Header.Get(ForwardedHeader) != "":
				WriteError(w, fmt.Errorf("leadership changed while forwarding: %w", api.ErrNotLeader))
			default:
				// Sessions are with the leader: only its state is current (a follower
				// may be replaying a long log after a restart).
				id, addr := rt.WaitLeader(r.Context(), st, 3*time.Second)
				if id == "" || id == rt.cfg.Self {
					rt.noLeaderHere(w, r, st)
					return
				}
				rt.proxy(w, r, addr, true)
			}
			return
		case Read:
			if st != nil && r.URL.Query().Has("stale") {
				h(w, r, st)
				return
			}
		}
		if st == nil {
			rt.forwardToManager(w, r)
			return
		}
		if !st.IsLeader() {
			if r.Header.Get(ForwardedHeader) != "" && !rt.becomingLeader(r.Context(), st) {
				// Forwarded to us as the leader, but we are not: the sender retries.
				WriteError(w, fmt.Errorf("leadership changed while forwarding: %w", api.ErrNotLeader))
				return
			}
			id, addr := rt.WaitLeader(r.Context(), st, 3*time.Second)
			switch {
			case id == "":
				rt.noLeaderHere(w, r, st)
				return
			case id != rt.cfg.Self:
				rt.proxy(w, r, addr, true)
				return
			case !rt.becomingLeader(r.Context(), st):
				WriteError(w, fmt.Errorf("leadership is changing: %w", api.ErrNotLeader))
				return
			}
		}
		if kind == Write && !rt.cfg.Leadership.WaitReady(r.Context(), st) {
			// Write handlers check the state before they propose (is the node
			// a member, is the name free): a leader still replaying its log
			// after a restart would refuse a registration as "removed".
			WriteError(w, fmt.Errorf("new leader still catching up: %w", api.ErrNotLeader))
			return
		}
		if kind == Read && r.URL.Query().Get("index") == "" {
			// A new leader's state may lag what earlier leaders committed until its
			// barrier is applied; a deposed leader that has not noticed yet would
			// serve stale data. Waiting for the barrier of this term and confirming
			// with a quorum makes reads linearizable.
			if !rt.cfg.Leadership.WaitReady(r.Context(), st) {
				WriteError(w, fmt.Errorf("new leader still catching up: %w", api.ErrNotLeader))
				return
			}
			if err := st.Raft().VerifyLeader().Error(); err != nil {
				WriteError(w, fmt.Errorf("this node lost leadership: %w", api.ErrNotLeader))
				return
			}
		}
		h(w, r, st)
	}
}

// becomingLeader covers the moment after an election when Raft names this node
// leader but has not yet switched it to the leader state.
func (rt *Router) becomingLeader(ctx context.Context, st *raftstore.Store) bool {
	if id, _ := st.Leader(); id != rt.cfg.Self {
		return false
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st.IsLeader() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return st.IsLeader()
}

// LeaderAPIAddr finds where the current leader's API listens; "" if no leader.
func (rt *Router) LeaderAPIAddr(st *raftstore.Store) (id, addr string) {
	id, raftAddr := st.Leader()
	if id == "" {
		return "", ""
	}
	if n := st.Snapshot().Node(id); n != nil {
		return id, net.JoinHostPort(n.Addr, strconv.Itoa(n.APIPort))
	}
	return id, rt.cfg.RaftToAPI(raftAddr)
}

// WaitLeader waits a bounded time for a leader to be known, so a write during an
// election succeeds instead of failing; it returns "" when there is no quorum.
func (rt *Router) WaitLeader(ctx context.Context, st *raftstore.Store, within time.Duration) (id, apiAddr string) {
	deadline := time.Now().Add(within)
	for {
		if id, addr := rt.LeaderAPIAddr(st); id != "" {
			return id, addr
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// NoQuorumError says how many managers this node can reach and what to do.
func (rt *Router) NoQuorumError(st *raftstore.Store) error {
	voters, _ := st.Voters()
	need := len(voters)/2 + 1
	return fmt.Errorf("%w: %d of %d managers reachable, %d needed; bring managers back, or run 'swarmlet init --force-new-cluster' on a surviving manager",
		api.ErrNoQuorum, rt.cfg.VotersAlive(voters), len(voters), need)
}

// ManagerClients lists API clients for the other managers this node can try.
func (rt *Router) ManagerClients() []*client.Client {
	var out []*client.Client
	for _, a := range rt.cfg.Managers() {
		out = append(out, rt.cfg.Peers.Manager(a))
	}
	return out
}

// LeaderClients lists whom to ask for what only the leader can do: the leader this
// manager knows (if not itself), then the other managers, which forward to theirs.
// A manager cut off from the leader (or removed) may not hear of a new one for
// seconds, or may remember a dead one, while the others know it now.
func (rt *Router) LeaderClients(st *raftstore.Store) []*client.Client {
	targets := rt.ManagerClients()
	if st != nil {
		if id, addr := rt.LeaderAPIAddr(st); id != "" && id != rt.cfg.Self {
			targets = append([]*client.Client{rt.cfg.Peers.Manager(addr)}, targets...)
		}
	}
	return targets
}

// forwardToManager is how a worker serves the API: through any reachable manager.
func (rt *Router) forwardToManager(w http.ResponseWriter, r *http.Request) {
	if !rt.tryManagers(w, r, false) {
		WriteError(w, fmt.Errorf("no manager reachable from this worker: %w", api.ErrNoQuorum))
	}
}

// noLeaderHere answers for a manager that knows no leader. It may be the one that
// is cut off (an old leader just healed hears of the new one only when Raft's
// backoff lets the leader call again, up to ~10 s), so it asks the other managers
// once; only if none can help is quorum lost.
func (rt *Router) noLeaderHere(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	if r.Header.Get(viaHeader) == "" && rt.tryManagers(w, r, true) {
		return
	}
	WriteError(w, rt.NoQuorumError(st))
}

// tryManagers proxies the request to the first other manager that accepts a
// connection; false if none does.
func (rt *Router) tryManagers(w http.ResponseWriter, r *http.Request, markVia bool) bool {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 8<<20))
	}
	for _, a := range rt.cfg.Managers() {
		conn, err := client.Dialer(rt.cfg.AdvertiseAddr, time.Second).DialContext(r.Context(), "tcp", a)
		if err != nil {
			continue
		}
		conn.Close()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		if markVia {
			r.Header.Set(viaHeader, rt.cfg.Self)
		}
		rt.proxy(w, r, a, false)
		return true
	}
	return false
}

func (rt *Router) proxy(w http.ResponseWriter, r *http.Request, addr string, markForwarded bool) {
	target := &url.URL{Scheme: "https", Host: addr}
	// Buffered, so that a request sent on a kept-alive connection the other side
	// had just closed can be sent again (the transport retries only what it can
	// rewind).
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 8<<20))
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if markForwarded {
				pr.Out.Header.Set(ForwardedHeader, rt.cfg.Self)
			}
			// The callee trusts this only from a manager: it names the caller this
			// node identified, never what the client itself claimed.
			pr.Out.Header.Del(authn.Header)
			if c, ok := authn.From(r.Context()); ok && !c.Anonymous() {
				pr.Out.Header.Set(authn.Header, c.Encode())
			}
			if body != nil {
				pr.Out.Body = io.NopCloser(bytes.NewReader(body))
				pr.Out.ContentLength = int64(len(body))
				pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			}
		},
		Transport:     rt.tr,
		FlushInterval: -1, // stream logs as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var op *net.OpError
			if r.Method == http.MethodGet || (errors.As(err, &op) && op.Op == "dial") {
				WriteError(w, fmt.Errorf("forward to %s: %v: %w", addr, err, api.ErrNotLeader))
				return
			}
			WriteError(w, fmt.Errorf("forward to %s: %v: %w", addr, err, api.ErrOutcomeUnknown))
		},
	}
	rp.ServeHTTP(w, r)
}

// WriteError answers with err's kind and the status code that goes with it.
func WriteError(w http.ResponseWriter, err error) {
	body := api.ErrorBodyOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.HTTPStatus(body.Kind))
	_ = json.NewEncoder(w).Encode(body)
}
