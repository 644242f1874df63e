package gossip

import (
	"encoding/binary"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist's Delegate, EventDelegate and
// ConflictDelegate on Gossip without exporting those methods.
type delegate Gossip

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
)

// User message types carried in memberlist's user-data messages.
const msgLeaveIntent byte = 1

// encodeIntent builds a leave intent: type, 8-byte nonce (so receivers
// re-gossip each intent once), node name.
func encodeIntent(name string, nonce uint64) []byte {
	b := make([]byte, 0, 9+len(name))
	b = append(b, msgLeaveIntent)
	b = binary.BigEndian.AppendUint64(b, nonce)
	return append(b, name...)
}

// leaveBroadcast carries a leave intent through a TransmitLimitedQueue. A
// newer intent for the same node replaces an older one.
type leaveBroadcast struct {
	name string
	msg  []byte
	done chan struct{} // closed when transmitted enough times; may be nil
}

func (b *leaveBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*leaveBroadcast)
	return ok && ob.name == b.name
}
func (b *leaveBroadcast) Message() []byte { return b.msg }
func (b *leaveBroadcast) Finished() {
	if b.done != nil {
		close(b.done)
	}
}

func (d *delegate) g() *Gossip { return (*Gossip)(d) }

// NodeMeta implements memberlist.Delegate. The meta was size-checked when set.
func (d *delegate) NodeMeta(limit int) []byte {
	g := d.g()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

// NotifyMsg implements memberlist.Delegate: records a leave intent and
// gossips it on, so that every member knows the coming NotifyLeave is a
// graceful leave.
func (d *delegate) NotifyMsg(b []byte) {
	g := d.g()
	if len(b) < 9 || b[0] != msgLeaveIntent {
		g.log.Debug("ignoring unknown user message", "len", len(b))
		return
	}
	nonce := binary.BigEndian.Uint64(b[1:9])
	name := string(b[9:])
	if name == g.name {
		return
	}
	g.mu.Lock()
	seen := g.intents[name].nonce == nonce
	if !seen {
		g.intents[name] = intent{nonce: nonce, at: time.Now()}
	}
	g.mu.Unlock()
	if !seen {
		g.log.Debug("leave intent", "node", name)
		// memberlist may reuse b after we return.
		g.bcast.QueueBroadcast(&leaveBroadcast{name: name, msg: append([]byte(nil), b...)})
	}
}

// GetBroadcasts implements memberlist.Delegate.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g().bcast.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate; there is no user state to push.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func (d *delegate) member(n *memberlist.Node, s State) Member {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		d.g().log.Warn("undecodable member meta", "node", n.Name, "err", err)
		meta = map[string]string{}
	}
	return Member{Name: n.Name, Addr: n.Addr.String(), Port: int(n.Port), Meta: meta, State: s}
}

func (d *delegate) record(m Member) {
	g := d.g()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members[m.Name] = &memberEntry{m: m, since: time.Now()}
}

// NotifyJoin implements memberlist.EventDelegate: a new member, or one that
// was dead or left and is alive again.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	g := d.g()
	m := d.member(n, Alive)
	g.mu.Lock()
	// An intent from an earlier life must not turn a later crash into a leave.
	delete(g.intents, n.Name)
	g.members[m.Name] = &memberEntry{m: m, since: time.Now()}
	g.mu.Unlock()
	g.log.Info("member joined", "node", m.Name, "addr", m.Addr, "port", m.Port)
	g.emit(Event{Kind: EventJoin, Member: m})
}

// NotifyUpdate implements memberlist.EventDelegate (meta changed).
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	g := d.g()
	m := d.member(n, Alive)
	d.record(m)
	g.log.Debug("member updated", "node", m.Name)
	g.emit(Event{Kind: EventUpdate, Member: m})
}

// NotifyLeave implements memberlist.EventDelegate. memberlist calls it for
// both a graceful leave and a failure, and in v0.6.0 the Node it passes
// does not carry the state (Node.State is shadowed by an internal field and
// stays StateAlive), so a recent leave intent is what tells them apart.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	g := d.g()
	g.mu.Lock()
	in, ok := g.intents[n.Name]
	delete(g.intents, n.Name)
	g.mu.Unlock()
	left := (n.Name == g.name && g.leaving.Load()) || (ok && time.Since(in.at) < intentTTL)
	kind, state := EventFail, Dead
	if left {
		kind, state = EventLeave, Left
	}
	m := d.member(n, state)
	d.record(m)
	if left {
		g.log.Info("member left", "node", m.Name, "addr", m.Addr)
	} else {
		g.log.Warn("member failed", "node", m.Name, "addr", m.Addr)
	}
	g.emit(Event{Kind: kind, Member: m})
}

// NotifyConflict implements memberlist.ConflictDelegate: another node
// claims a live member's name from a different address; memberlist ignores
// it, and an operator should know.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.g().log.Warn("node name conflict: ignoring member claiming an existing name from another address",
		"node", existing.Name, "existing", existing.Address(), "other", other.Address())
}
