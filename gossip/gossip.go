package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's liveness as this node sees it.
type State int

const (
	Alive State = iota
	// Suspect is part of the model but not reported in this version:
	// memberlist does not expose the suspect state through its public API
	// (nor through its event delegate), so suspect members show as Alive.
	Suspect
	Dead // failed: stopped answering probes
	Left // left gracefully (Leave)
)

func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Member is one node of the cluster.
type Member struct {
	Name  string // node ID
	Addr  string // IP
	Port  int
	Meta  map[string]string
	State State
}

// EventKind says what happened to a member.
type EventKind int

const (
	EventJoin   EventKind = iota // new member, or a dead/left one came back
	EventLeave                   // member left gracefully
	EventFail                    // member was declared dead by failure detection
	EventUpdate                  // member's meta changed
)

func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventUpdate:
		return "update"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a membership change.
type Event struct {
	Kind   EventKind
	Member Member
}

// EventBuffer is the capacity of the Events channel. memberlist calls its
// event delegate while holding its node lock, so sending must never block;
// when the buffer is full the oldest event is dropped (and a warning logged).
const EventBuffer = 1024

// Defaults, tuned for a LAN: a killed node is declared dead in about 2.5 s
// (measured on loopback, 3 members: median 2.4 s, worst 2.9 s over 10 runs;
// BenchmarkFailureDetection), instead of memberlist's LAN default of about
// 5-6 s. Each member probes one peer every 500ms; a failed probe makes the
// peer suspect, and a suspect that does not refute within 3 probe intervals
// (1.5 s, scaled by log10 of the cluster size above 10) is declared dead.
const (
	DefaultProbeInterval     = 500 * time.Millisecond
	DefaultProbeTimeout      = 250 * time.Millisecond
	DefaultGossipInterval    = 100 * time.Millisecond
	DefaultSuspicionMult     = 3
	DefaultReconnectInterval = 2 * time.Second
)

const (
	// tcpTimeout bounds join and push/pull exchanges; LAN peers answer in
	// milliseconds, and a short timeout keeps a join to a dead seed cheap.
	tcpTimeout = 2 * time.Second
	// suspicionMaxTimeoutMult 1 turns off Lifeguard's longer suspicion
	// while waiting for other members to confirm it: with memberlist's default
	// of 6, a 3-member cluster waited up to 9 s for a confirmation, and
	// detection ranged 2.3-3.8 s; with 1 it is a steady 2.4-2.9 s. A suspect
	// still has 1.5 s to refute, many gossip rounds on a LAN.
	suspicionMaxTimeoutMult = 1
	// deadNodeReclaimTime lets a node that was dead this long come back under
	// the same name at another address (memberlist refuses that otherwise,
	// until the dead entry is reaped after GossipToTheDeadTime).
	deadNodeReclaimTime = 5 * time.Second
	// forgetAfter is how long dead and left members stay in AllMembers and
	// dead ones are retried by the reconnect loop (as Serf's reconnect timeout).
	forgetAfter = 24 * time.Hour
	// intentTTL bounds how long a leave intent can turn a later NotifyLeave
	// into EventLeave, so a stale intent cannot mask a real failure.
	intentTTL = 30 * time.Second
	// updateTimeout bounds how long UpdateMeta waits for its broadcast.
	updateTimeout = 5 * time.Second
)

// Config configures a gossip member.
type Config struct {
	Name      string            // node ID, unique in the cluster
	BindAddr  string            // advertise IP: listeners bind here and every outgoing packet and connection leaves from here
	BindPort  int               // 0 = pick a free port
	Meta      map[string]string // node metadata; encoded it must fit in 512 bytes (ErrMetaTooBig)
	SecretKey []byte            // optional gossip encryption key, 16, 24 or 32 bytes (AES-128/192/256)
	// Keys, if set, is a keyring instead (SecretKey then must be empty): every key
	// opens incoming messages, the first one seals outgoing ones. SetKeys changes it.
	Keys   [][]byte
	Logger *slog.Logger // nil = discard; memberlist's own output goes here at debug level; component=gossip is added

	// Timing knobs; zero means the Default* above.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	// ReconnectInterval is how often one random dead member is re-joined, so
	// that two sides of a healed partition find each other again (memberlist
	// stops talking to dead members after GossipToTheDeadTime). Zero means
	// DefaultReconnectInterval; negative disables reconnecting.
	ReconnectInterval time.Duration
}

// ErrShutdown is returned by operations on a Gossip that was shut down.
var ErrShutdown = errors.New("gossip: shut down")

// Gossip is a running cluster member.
type Gossip struct {
	keyring *memberlist.Keyring // nil: unencrypted
	name    string
	log     *slog.Logger
	ml      *memberlist.Memberlist
	tr      *transport
	bcast   *memberlist.TransmitLimitedQueue

	mu      sync.Mutex
	meta    []byte                  // local meta, encoded
	members map[string]*memberEntry // everything the event delegate reported
	intents map[string]intent       // leave intents heard from others, by node name

	evMu     sync.Mutex
	events   chan Event
	evClosed bool
	dropped  atomic.Uint64

	leaving  atomic.Bool
	stopped  atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type memberEntry struct {
	m     Member
	since time.Time // last state change
}

type intent struct {
	nonce uint64
	at    time.Time
}

func (c *Config) setDefaults() {
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = DefaultGossipInterval
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = DefaultReconnectInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() (net.IP, error) {
	if c.Name == "" {
		return nil, errors.New("gossip: config: Name is required")
	}
	ip := net.ParseIP(c.BindAddr)
	if ip == nil || ip.IsUnspecified() {
		// A wildcard address would let the kernel pick source addresses,
		// which the design forbids; the node must name its advertise IP.
		return nil, fmt.Errorf("gossip: config: BindAddr %q must be a specific IP address", c.BindAddr)
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return nil, fmt.Errorf("gossip: config: BindPort %d out of range", c.BindPort)
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		return nil, fmt.Errorf("gossip: config: ProbeTimeout %s must be shorter than ProbeInterval %s", c.ProbeTimeout, c.ProbeInterval)
	}
	return ip, nil
}

// Start binds the listeners and starts gossiping. The member is alone until
// Join is called (or another member joins it).
func Start(cfg Config) (*Gossip, error) {
	cfg.setDefaults()
	ip, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	meta, err := encodeMeta(cfg.Meta)
	if err != nil {
		return nil, err
	}
	var keyring *memberlist.Keyring
	switch {
	case len(cfg.SecretKey) > 0 && len(cfg.Keys) > 0:
		return nil, errors.New("gossip: give SecretKey or Keys, not both")
	case len(cfg.SecretKey) > 0:
		if keyring, err = memberlist.NewKeyring(nil, cfg.SecretKey); err != nil {
			return nil, fmt.Errorf("gossip: secret key: %w", err)
		}
	case len(cfg.Keys) > 0:
		if keyring, err = memberlist.NewKeyring(cfg.Keys[1:], cfg.Keys[0]); err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
	}

	logger := cfg.Logger // the caller owns the component key
	stdLogger := newStdLogger(logger)
	tr, err := newTransport(ip, cfg.BindPort, stdLogger)
	if err != nil {
		return nil, err
	}

	g := &Gossip{
		keyring: keyring,
		name:    cfg.Name,
		log:     logger,
		tr:      tr,
		meta:    meta,
		members: map[string]*memberEntry{},
		intents: map[string]intent{},
		events:  make(chan Event, EventBuffer),
		stop:    make(chan struct{}),
	}
	// Sized from our own member table: memberlist may ask for broadcasts
	// before Create has returned.
	g.bcast = &memberlist.TransmitLimitedQueue{NumNodes: g.NumAlive, RetransmitMult: 4}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = ip.String()
	mc.BindPort = tr.port() // also the default port for Join addresses without one
	mc.AdvertiseAddr = ip.String()
	mc.AdvertisePort = tr.port()
	mc.Transport = tr
	mc.Logger = stdLogger
	mc.Delegate = (*delegate)(g)
	mc.Events = (*delegate)(g)
	mc.Conflict = (*delegate)(g)
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.GossipInterval = cfg.GossipInterval
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = suspicionMaxTimeoutMult
	mc.TCPTimeout = tcpTimeout
	mc.DeadNodeReclaimTime = deadNodeReclaimTime
	mc.Keyring = keyring

	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown() // Create does not always release a transport it was handed
		return nil, fmt.Errorf("gossip: start %s on %s: %w", cfg.Name, net.JoinHostPort(ip.String(), fmt.Sprint(tr.port())), err)
	}
	g.ml = ml
	logger.Info("gossip started", "node", cfg.Name, "addr", ip.String(), "port", tr.port(), "encrypted", keyring != nil)

	if cfg.ReconnectInterval > 0 {
		g.wg.Add(1)
		go g.reconnectLoop(cfg.ReconnectInterval)
	}
	return g, nil
}

// Join contacts the given "ip:port" addresses (a missing port means our own
// port) and merges state with each. It returns how many were contacted; the
// error, when none was, names the addresses tried.
func (g *Gossip) Join(addrs []string) (int, error) {
	if g.stopped.Load() {
		return 0, ErrShutdown
	}
	if len(addrs) == 0 {
		return 0, errors.New("gossip: join: no addresses given")
	}
	n, err := g.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("gossip: join via %s: %w", strings.Join(addrs, ", "), err)
	}
	g.log.Info("joined cluster", "contacted", n, "addrs", addrs)
	return n, nil
}

// Members returns the live members (alive or suspect), self included,
// sorted by name.
func (g *Gossip) Members() []Member {
	return g.list(func(s State) bool { return s == Alive || s == Suspect })
}

// AllMembers also returns dead and left members, which are kept for
// 24 hours or until they come back.
func (g *Gossip) AllMembers() []Member {
	return g.list(func(State) bool { return true })
}

func (g *Gossip) list(keep func(State) bool) []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetLocked()
	out := make([]Member, 0, len(g.members))
	for _, e := range g.members {
		if keep(e.m.State) {
			m := e.m
			m.Meta = maps.Clone(m.Meta)
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// forgetLocked drops dead and left members that have been gone for long, so
// the table does not grow forever with churn.
func (g *Gossip) forgetLocked() {
	for name, e := range g.members {
		if (e.m.State == Dead || e.m.State == Left) && time.Since(e.since) > forgetAfter {
			delete(g.members, name)
		}
	}
}

// Events returns the membership events channel (capacity EventBuffer). It
// includes events about this node itself (its own join at Start, its own
// leave). If the reader falls behind the oldest events are dropped. The
// channel is closed by Shutdown.
func (g *Gossip) Events() <-chan Event { return g.events }

// UpdateMeta replaces this node's metadata and gossips it. It waits (up to a
// few seconds) for the broadcast to go out; if it does not, the update still
// spreads through later gossip and push/pull, so that is not an error.
func (g *Gossip) UpdateMeta(meta map[string]string) error {
	if g.stopped.Load() {
		return ErrShutdown
	}
	b, err := encodeMeta(meta)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.meta = b
	g.mu.Unlock()
	if err := g.ml.UpdateNode(updateTimeout); err != nil {
		g.log.Debug("meta update not yet fully broadcast", "err", err)
	}
	return nil
}

// LocalName returns this node's name.
func (g *Gossip) LocalName() string { return g.name }

// LocalAddr returns the address and port this node gossips on.
func (g *Gossip) LocalAddr() (string, int) { return g.tr.local.IP.String(), g.tr.port() }

// NumAlive returns the number of live members, self included.
func (g *Gossip) NumAlive() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, e := range g.members {
		if e.m.State == Alive || e.m.State == Suspect {
			n++
		}
	}
	return n
}

// Leave leaves the cluster gracefully, so that others see EventLeave rather
// than EventFail. It first gossips a leave intent and waits for it to go out
// (memberlist itself does not tell its delegate whether a node left or
// failed), then broadcasts memberlist's own leave. Call Shutdown afterwards.
func (g *Gossip) Leave(timeout time.Duration) error {
	if g.stopped.Load() {
		return ErrShutdown
	}
	if !g.leaving.CompareAndSwap(false, true) {
		return nil
	}
	deadline := time.Now().Add(timeout)
	if g.NumAlive() > 1 {
		done := make(chan struct{})
		g.bcast.QueueBroadcast(&leaveBroadcast{name: g.name, msg: encodeIntent(g.name, rand.Uint64()), done: done})
		t := time.NewTimer(timeout / 2)
		select {
		case <-done:
		case <-t.C:
			g.log.Warn("leave intent not fully broadcast; some members may report a failure instead", "timeout", timeout/2)
		}
		t.Stop()
	}
	if err := g.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.log.Info("left cluster")
	return nil
}

// Shutdown stops gossiping without telling anyone: others will detect a
// failure unless Leave was called first. It closes the Events channel. It is
// safe to call more than once.
func (g *Gossip) Shutdown() error {
	var err error
	g.stopOnce.Do(func() {
		g.stopped.Store(true)
		close(g.stop)
		if e := g.ml.Shutdown(); e != nil {
			err = fmt.Errorf("gossip: shutdown: %w", e)
		}
		g.wg.Wait()
		g.evMu.Lock()
		g.evClosed = true
		close(g.events)
		g.evMu.Unlock()
		g.log.Info("gossip stopped")
	})
	return err
}

// emit never blocks: memberlist holds its node lock while calling the
// delegate, so a slow reader must not stall failure detection.
func (g *Gossip) emit(ev Event) {
	g.evMu.Lock()
	defer g.evMu.Unlock()
	if g.evClosed {
		return
	}
	select {
	case g.events <- ev:
		return
	default:
	}
	select {
	case old := <-g.events:
		n := g.dropped.Add(1)
		g.log.Warn("event buffer full, dropped oldest event", "dropped_kind", old.Kind.String(), "dropped_node", old.Member.Name, "dropped_total", n)
	default:
	}
	select {
	case g.events <- ev:
	default:
	}
}

// reconnectLoop periodically re-joins one random dead member. memberlist
// stops probing dead members and reaps them after GossipToTheDeadTime, so
// without this two halves of a healed partition would stay apart.
func (g *Gossip) reconnectLoop(every time.Duration) {
	defer g.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if g.leaving.Load() {
			continue
		}
		var dead []Member
		for _, m := range g.AllMembers() {
			if m.State == Dead {
				dead = append(dead, m)
			}
		}
		if len(dead) == 0 {
			continue
		}
		m := dead[rand.IntN(len(dead))]
		addr := net.JoinHostPort(m.Addr, fmt.Sprint(m.Port))
		if _, err := g.ml.Join([]string{addr}); err != nil {
			g.log.Debug("reconnect to dead member failed", "node", m.Name, "addr", addr, "err", err)
		} else {
			g.log.Info("reconnected to dead member", "node", m.Name, "addr", addr)
		}
	}
}
