package lb

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The nftables balancer owns one table (family ip) and nothing else:
//
//	table ip swarmlet {
//	  map frontends { type ipv4_addr . inet_proto . inet_service : verdict
//	                  elements = { 10.43.0.1 . tcp . 80 : goto fe-tcp-10.43.0.1-80 } }
//	  map addresses { type ipv4_addr . inet_proto : verdict            # frontends of every port (Port 0)
//	                  elements = { 10.43.0.1 . tcp : goto fe-tcp-10.43.0.1-0 } }
//	  chain prerouting  { type nat hook prerouting priority dstnat;
//	                      ip daddr . meta l4proto . th dport vmap @frontends
//	                      ip daddr . meta l4proto vmap @addresses }
//	  chain output      { (the same, for the host's own connections) }
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	                      meta mark & 0x4000 != 0 ip saddr POOL oifname "OVERLAY" accept   # KeepSourceFrom/Via
//	                      meta mark & 0x4000 != 0 oifname != "lo" masquerade }
//	  chain fe-tcp-10.43.0.1-80 {
//	    meta mark set meta mark | 0x4000 dnat to numgen random mod 3 map { 0 : 10.42.0.5 . 80, ... } comment "swarmlet svc=web fp=..."
//	  }
//	  chain fe-tcp-10.43.0.1-0 { ... dnat to numgen random mod 3 map { 0 : 10.42.0.5, ... } }   # the port stays
//	}
//
// Why this shape:
//   - One vmap lookup per new connection whatever the number of frontends; nat
//     chains only see the first packet of a connection, conntrack does the rest,
//     so replacing rules never disturbs established connections.
//   - One regular chain per frontend, so a backend change rewrites only that
//     chain (flush + one rule in one atomic transaction) and adding or removing
//     a frontend touches one chain and one map element.
//   - Each frontend rule carries a comment with a fingerprint of its content.
//     Sync reads the kernel's state back and compares fingerprints, so it is
//     idempotent (an unchanged table sends no batch at all) and a restarted
//     process adopts the table it finds instead of duplicating or flushing it.
//   - Masquerade: a DNATed connection needs its source rewritten when the reply
//     would otherwise not come back through this host: a local client of a
//     127/8 VIP has source 127.0.0.1, which cannot leave loopback (see
//     EnableRouteLocalnet); a client from another host reaching a published port
//     would get the reply straight from a backend on a third host; a backend
//     reaching its own VIP would hairpin. All of these leave through a
//     non-loopback device, so the rule is "we DNATed it (mark) and it leaves
//     through something other than lo". Loopback backends (process engine)
//     keep the real client address. The cost is the one Docker's routing mesh
//     has: backends on other devices see the node's address, not the client's.
//   - Connections from the container pool leaving through the overlay are not
//     masqueraded (KeepSourceFrom/Via): the peer routes the pool back through
//     the overlay to us, so replies pass our conntrack, and the backend sees
//     its caller's own address.
//   - Frontends without backends reject (TCP reset, ICMP port unreachable)
//     instead of falling through to whatever might listen on the VIP's port.
const (
	nftSchema      = "v1"
	nftMapName     = "frontends"
	nftAddrMapName = "addresses" // frontends of every port (Frontend.Port 0)
	nftPrerouting  = "prerouting"
	nftOutput      = "output"
	nftPostrouting = "postrouting"
	nftFEPrefix    = "fe-"

	icmpPortUnreachable = 3
)

type nftBalancer struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
}

func nftConn(cfg Config) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if cfg.NetNSFd > 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables netlink: %w", err)
	}
	return c, nil
}

func probeNftables(cfg Config) error {
	c, err := nftConn(cfg)
	if err != nil {
		return err
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		return fmt.Errorf("nftables list tables: %w", err)
	}
	return nil
}

func newNftables(cfg Config) (Balancer, error) {
	c, err := nftConn(cfg)
	if err != nil {
		return nil, err
	}
	// Fail now, not at the first Sync, when nf_tables is missing or we lack
	// CAP_NET_ADMIN: the daemon wants to report that at startup.
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		return nil, fmt.Errorf("nftables unavailable (need nf_tables and CAP_NET_ADMIN): %w", err)
	}
	return &nftBalancer{
		cfg:   cfg,
		log:   cfg.Logger.With("table", cfg.TableName),
		conn:  c,
		table: &nftables.Table{Name: cfg.TableName, Family: nftables.TableFamilyIPv4},
	}, nil
}

func (b *nftBalancer) Name() string { return KindNftables }

// freshConn starts each Sync and Close on a new nftables.Conn: a Conn keeps
// queued messages and a sticky serialization error after a failed batch, which
// must never leak into the next one. Conns are cheap; each operation opens its
// own netlink socket anyway.
func (b *nftBalancer) freshConn() error {
	c, err := nftConn(b.cfg)
	if err != nil {
		return err
	}
	b.conn = c
	return nil
}

// nftState is what Sync reads back from the kernel.
type nftState struct {
	tableExists bool
	baseOK      bool
	feChains    map[key]bool   // frontend chains present
	elems       map[key]bool   // vmap elements present
	fps         map[key]string // fingerprint per frontend; "" when present but not as we would write it
}

func (b *nftBalancer) Sync(ctx context.Context, t Table) error {
	desired, verr := normalize(t, true)
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.freshConn(); err != nil {
		return err
	}
	st, err := b.readState()
	if err != nil {
		return fmt.Errorf("nftables sync: read state: %w", err)
	}
	plan := planFrontends(desired, st.fps, b.fingerprint)
	if st.tableExists && st.baseOK && plan.empty() {
		return verr
	}
	if err := b.apply(st, plan); err != nil {
		return errors.Join(fmt.Errorf("nftables sync: %w", err), verr)
	}
	b.log.Info("nftables synced", "frontends", len(desired), "added", len(plan.Add), "updated", len(plan.Update), "removed", len(plan.Remove), "rebuilt", st.tableExists && !st.baseOK)
	if n, err := flushStaleUDP(b.cfg.NetNSFd, plan); err != nil {
		// The rules are right; stale UDP flows only linger until they idle out.
		b.log.Warn("udp conntrack cleanup failed", "err", err)
	} else if n > 0 {
		b.log.Info("udp conntrack entries to removed backends deleted", "entries", n)
	}
	return verr
}

func (b *nftBalancer) readState() (nftState, error) {
	st := nftState{feChains: map[key]bool{}, elems: map[key]bool{}, fps: map[key]string{}}
	tables, err := b.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("list tables: %w", err)
	}
	for _, tb := range tables {
		if tb.Name == b.table.Name {
			st.tableExists = true
		}
	}
	if !st.tableExists {
		return st, nil
	}
	chains, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("list chains: %w", err)
	}
	base := map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name != b.table.Name {
			continue
		}
		if k, ok := parseFEChain(ch.Name); ok {
			st.feChains[k] = true
			rules, err := b.conn.GetRules(b.table, ch)
			if err != nil {
				return st, fmt.Errorf("list rules of %s: %w", ch.Name, err)
			}
			st.fps[k] = ""
			if len(rules) == 1 {
				if c, ok := userdata.GetString(rules[0].UserData, userdata.TypeComment); ok {
					st.fps[k] = commentFingerprint(c)
				}
			}
			continue
		}
		if want, isBase := b.baseChainSpec(ch.Name); isBase && sameHook(ch, want) {
			rules, err := b.conn.GetRules(b.table, ch)
			if err != nil {
				return st, fmt.Errorf("list rules of %s: %w", ch.Name, err)
			}
			if len(rules) == b.baseRules(ch.Name) {
				c, _ := userdata.GetString(rules[len(rules)-1].UserData, userdata.TypeComment)
				base[ch.Name] = c == b.baseComment(ch.Name)
			}
		}
	}
	mapsOK := true
	for _, name := range []string{nftMapName, nftAddrMapName} {
		set, err := b.conn.GetSetByName(b.table, name)
		if err != nil || !set.IsMap {
			mapsOK = false
			continue
		}
		elems, err := b.conn.GetSetElements(set)
		if err != nil {
			return st, fmt.Errorf("list %s elements: %w", name, err)
		}
		for _, e := range elems {
			if k, ok := parseElemKey(e.Key); ok {
				st.elems[k] = true
			}
		}
	}
	st.baseOK = mapsOK && base[nftPrerouting] && base[nftOutput] && base[nftPostrouting]
	// A frontend counts as in place only when both its chain and its map
	// element are; otherwise the plan updates it, which repairs either half.
	for k := range st.elems {
		if !st.feChains[k] {
			st.fps[k] = ""
		}
	}
	for k := range st.feChains {
		if !st.elems[k] {
			st.fps[k] = ""
		}
	}
	if !st.baseOK {
		// The table is ours by name but not in the shape this version writes
		// (older schema, a different mark, hand edits): it is rebuilt whole.
		st.fps = map[key]string{}
	}
	return st, nil
}

func sameHook(got, want *nftables.Chain) bool {
	return got.Type == want.Type && got.Hooknum != nil && *got.Hooknum == *want.Hooknum &&
		got.Priority != nil && *got.Priority == *want.Priority
}

func (b *nftBalancer) baseChainSpec(name string) (*nftables.Chain, bool) {
	c := &nftables.Chain{Name: name, Table: b.table, Type: nftables.ChainTypeNAT}
	switch name {
	case nftPrerouting:
		c.Hooknum, c.Priority = nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest
	case nftOutput:
		c.Hooknum, c.Priority = nftables.ChainHookOutput, nftables.ChainPriorityNATDest
	case nftPostrouting:
		c.Hooknum, c.Priority = nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource
	default:
		return nil, false
	}
	return c, true
}

func (b *nftBalancer) baseComment(chain string) string {
	c := fmt.Sprintf("swarmlet %s %s mark=%#x", nftSchema, chain, b.cfg.MasqueradeMark)
	if chain == nftPostrouting && b.keepSource() {
		c += fmt.Sprintf(" keep=%s@%s", b.cfg.KeepSourceFrom, b.cfg.KeepSourceVia)
	}
	if b.cfg.Owner != "" {
		c += " owner=" + b.cfg.Owner
	}
	return c
}

func (b *nftBalancer) keepSource() bool {
	return b.cfg.KeepSourceFrom.IsValid() && b.cfg.KeepSourceFrom.Addr().Is4() && b.cfg.KeepSourceVia != ""
}

// baseRules is how many rules a base chain holds; the last one carries the
// chain's comment.
func (b *nftBalancer) baseRules(chain string) int {
	if chain == nftPostrouting && !b.keepSource() {
		return 1
	}
	return 2 // prerouting and output: by port, then by address
}

// fingerprint summarises everything the frontend chain's rule depends on.
func (b *nftBalancer) fingerprint(d desiredFE) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%#x|%s|%s", nftSchema, d.Service, b.cfg.MasqueradeMark, d.Key, d.Key.Proto)
	for _, be := range d.Backends {
		fmt.Fprintf(h, "|%s", be)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func feComment(service, fp string) string {
	// Userdata is capped at 256 bytes; keep the service name short and free of
	// the separator the parser relies on.
	service = strings.Map(func(r rune) rune {
		if r == ' ' || r == '"' {
			return '_'
		}
		return r
	}, service)
	if len(service) > 64 {
		service = service[:64]
	}
	return "swarmlet svc=" + service + " fp=" + fp
}

func commentFingerprint(c string) string {
	if !strings.HasPrefix(c, "swarmlet ") {
		return ""
	}
	_, fp, ok := strings.Cut(c, " fp=")
	if !ok {
		return ""
	}
	return fp
}

func feChainName(k key) string {
	return nftFEPrefix + k.Proto + "-" + k.Addr.String() + "-" + strconv.Itoa(int(k.Port))
}

func parseFEChain(name string) (key, bool) {
	rest, ok := strings.CutPrefix(name, nftFEPrefix)
	if !ok {
		return key{}, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 || (parts[0] != "tcp" && parts[0] != "udp") {
		return key{}, false
	}
	a, err := netip.ParseAddr(parts[1])
	if err != nil || !a.Is4() {
		return key{}, false
	}
	p, err := strconv.ParseUint(parts[2], 10, 16)
	if err != nil {
		return key{}, false
	}
	return key{Addr: a, Port: uint16(p), Proto: parts[0]}, true
}

func protoNum(proto string) byte {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// elemKey encodes ipv4_addr . inet_proto . inet_service (the frontends map),
// or ipv4_addr . inet_proto for a frontend of every port (the addresses
// map); concatenated fields are each padded to a 4-byte register.
func elemKey(k key) []byte {
	n := 12
	if k.Port == 0 {
		n = 8
	}
	b := make([]byte, n)
	a := k.Addr.As4()
	copy(b[0:4], a[:])
	b[4] = protoNum(k.Proto)
	if k.Port != 0 {
		binary.BigEndian.PutUint16(b[8:10], k.Port)
	}
	return b
}

func parseElemKey(b []byte) (key, bool) {
	if len(b) == 8 {
		b = append(b[:8:8], 0, 0, 0, 0) // port 0: every port
	}
	if len(b) != 12 {
		return key{}, false
	}
	var proto string
	switch b[4] {
	case unix.IPPROTO_TCP:
		proto = "tcp"
	case unix.IPPROTO_UDP:
		proto = "udp"
	default:
		return key{}, false
	}
	return key{Addr: netip.AddrFrom4([4]byte(b[0:4])), Port: binary.BigEndian.Uint16(b[8:10]), Proto: proto}, true
}

var (
	nftMapKeyType  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	nftAddrKeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto)
	nftBackendVal  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
)

func (b *nftBalancer) vmap() *nftables.Set {
	return &nftables.Set{
		Table:         b.table,
		Name:          nftMapName,
		IsMap:         true,
		Concatenation: true,
		KeyType:       nftMapKeyType,
		DataType:      nftables.TypeVerdict,
		Comment:       "swarmlet frontends",
	}
}

// addrMap is the vmap of frontends of every port, looked up after vmap().
func (b *nftBalancer) addrMap() *nftables.Set {
	return &nftables.Set{
		Table:         b.table,
		Name:          nftAddrMapName,
		IsMap:         true,
		Concatenation: true,
		KeyType:       nftAddrKeyType,
		DataType:      nftables.TypeVerdict,
		Comment:       "swarmlet frontends of every port",
	}
}

// setOf is the map a frontend's element lives in.
func (b *nftBalancer) setOf(k key, ports, addrs *nftables.Set) *nftables.Set {
	if k.Port == 0 {
		return addrs
	}
	return ports
}

// apply sends the whole plan as one netlink batch, which nf_tables commits
// atomically: a packet sees either the old or the new ruleset, never a mix.
func (b *nftBalancer) apply(st nftState, plan frontendPlan) error {
	c := b.conn
	set, addrs := b.vmap(), b.addrMap()
	if !st.baseOK {
		if st.tableExists {
			b.log.Warn("rebuilding nftables table not in the expected shape")
			c.DelTable(b.table)
			st.feChains, st.elems = map[key]bool{}, map[key]bool{}
		}
		c.AddTable(b.table)
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("add map %s: %w", nftMapName, err)
		}
		if err := c.AddSet(addrs, nil); err != nil {
			return fmt.Errorf("add map %s: %w", nftAddrMapName, err)
		}
		for _, name := range []string{nftPrerouting, nftOutput} {
			ch, _ := b.baseChainSpec(name)
			c.AddChain(ch)
			c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: dispatchExprs(set)})
			c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: dispatchAddrExprs(addrs), UserData: comment(b.baseComment(name))})
		}
		ch, _ := b.baseChainSpec(nftPostrouting)
		c.AddChain(ch)
		if b.keepSource() {
			c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: keepSourceExprs(b.cfg.MasqueradeMark, b.cfg.KeepSourceFrom, b.cfg.KeepSourceVia)})
		}
		c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: masqExprs(b.cfg.MasqueradeMark), UserData: comment(b.baseComment(nftPostrouting))})
	}
	for _, k := range plan.Remove {
		if st.elems[k] {
			if err := c.SetDeleteElements(b.setOf(k, set, addrs), []nftables.SetElement{{Key: elemKey(k)}}); err != nil {
				return fmt.Errorf("remove %s: %w", k, err)
			}
		}
		if st.feChains[k] {
			ch := &nftables.Chain{Name: feChainName(k), Table: b.table}
			c.FlushChain(ch)
			c.DelChain(ch)
		}
	}
	for _, d := range append(append([]desiredFE{}, plan.Add...), plan.Update...) {
		ch := &nftables.Chain{Name: feChainName(d.Key), Table: b.table}
		if st.feChains[d.Key] {
			c.FlushChain(ch)
		} else {
			c.AddChain(ch)
		}
		if err := b.addFrontendRule(ch, d); err != nil {
			return err
		}
		if !st.elems[d.Key] {
			el := nftables.SetElement{Key: elemKey(d.Key), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: ch.Name}}
			if err := c.SetAddElements(b.setOf(d.Key, set, addrs), []nftables.SetElement{el}); err != nil {
				return fmt.Errorf("add %s: %w", d.Key, err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	return nil
}

func (b *nftBalancer) addFrontendRule(ch *nftables.Chain, d desiredFE) error {
	ud := comment(feComment(d.Service, b.fingerprint(d)))
	if len(d.Backends) == 0 {
		rej := &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}
		if d.Key.Proto == "udp" {
			rej = &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable}
		}
		b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: []expr.Any{rej}, UserData: ud})
		return nil
	}
	// The backend list lives in an anonymous map bound to the rule: it is
	// replaced together with the rule, and the modulus always matches its size.
	// A frontend of every port maps to addresses alone: the port stays.
	every := d.Key.Port == 0
	m := &nftables.Set{
		Table:        b.table,
		Anonymous:    true,
		Constant:     true,
		IsMap:        true,
		KeyType:      nftables.TypeInteger,
		KeyByteOrder: binaryutil.BigEndian,
		DataType:     nftBackendVal,
	}
	if every {
		m.DataType = nftables.TypeIPAddr
	}
	elems := make([]nftables.SetElement, len(d.Backends))
	for i, be := range d.Backends {
		a := be.Addr().As4()
		val := a[:]
		if !every {
			val = make([]byte, 8)
			copy(val[0:4], a[:])
			binary.BigEndian.PutUint16(val[4:6], be.Port())
		}
		elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint32(uint32(i)), Val: val}
	}
	if err := b.conn.AddSet(m, elems); err != nil {
		return fmt.Errorf("add backend map of %s: %w", d.Key, err)
	}
	mark := b.cfg.MasqueradeMark
	exprs := []expr.Any{
		// meta mark set meta mark | MARK: tells postrouting this is ours.
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^mark), Xor: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		// dnat to numgen random mod N map { i : addr . port }
		&expr.Numgen{Register: 1, Modulus: uint32(len(d.Backends)), Type: unix.NFT_NG_RANDOM},
		// The library marks anonymous maps big-endian, so convert numgen's
		// host-order result for nft to print the keys as 0, 1, 2...
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, DestRegister: 1, IsDestRegSet: true},
		// The map value fills reg 1 (address) and the next 32-bit register,
		// NFT_REG32_01 = 9 (port), as nft itself compiles it.
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9, Specified: true},
	}
	if every {
		exprs[len(exprs)-1] = &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
	}
	b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: exprs, UserData: ud})
	return nil
}

// dispatchExprs is "ip daddr . meta l4proto . th dport vmap @frontends".
func dispatchExprs(set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, DestRegister: 0, IsDestRegSet: true},
	}
}

// dispatchAddrExprs is "ip daddr . meta l4proto vmap @addresses".
func dispatchAddrExprs(set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, DestRegister: 0, IsDestRegSet: true},
	}
}

// masqExprs is `meta mark & MARK != 0 oifname != "lo" masquerade`.
func masqExprs(mark uint32) []expr.Any {
	lo := make([]byte, unix.IFNAMSIZ)
	copy(lo, "lo")
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: lo},
		&expr.Masq{},
	}
}

// keepSourceExprs is `meta mark & MARK != 0 ip saddr FROM oifname VIA accept`:
// accepted in a nat chain, the connection gets no source NAT from it.
func keepSourceExprs(mark uint32, from netip.Prefix, via string) []expr.Any {
	dev := make([]byte, unix.IFNAMSIZ)
	copy(dev, via)
	a := from.Masked().Addr().As4()
	m := net.CIDRMask(from.Bits(), 32)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dev},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// Close deletes the table, which takes every chain, map and rule with it.
// Connections already NATed keep flowing through their conntrack entries.
func (b *nftBalancer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.freshConn(); err != nil {
		return err
	}
	tables, err := b.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("nftables close: list tables: %w", err)
	}
	for _, tb := range tables {
		if tb.Name == b.table.Name {
			b.conn.DelTable(b.table)
			if err := b.conn.Flush(); err != nil {
				return fmt.Errorf("nftables close: delete table %s: %w", b.table.Name, err)
			}
			b.log.Info("nftables table deleted")
		}
	}
	return nil
}
