package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// Backend is one task endpoint a frontend spreads connections over.
type Backend struct {
	IP   net.IP
	Port int
}

// Frontend is one balanced address: a service VIP or a published (ingress) port
// on a node address.
type Frontend struct {
	Service string // for naming and comments only
	IP      net.IP // VIP, or a node address for a published (ingress) port
	// Port 0 balances every port of IP (a VIP whose backends are containers
	// with addresses of their own): each connection keeps its destination
	// port, and the backends' Port must be 0 too. A frontend for one port
	// of the same IP takes precedence. Only the nftables balancer has it.
	Port     int
	Proto    string // "tcp" | "udp"
	Backends []Backend
}

// ErrEveryPort is returned (wrapped, per frontend) by balancers that cannot
// balance every port of an address (Frontend.Port 0).
var ErrEveryPort = errors.New("this balancer cannot balance every port of an address; only nftables can")

// Table is the whole desired state of a balancer. Sync is always handed the full
// table, never a delta, so that a missed update cannot leave stale state behind.
type Table struct {
	Frontends []Frontend
}

// Balancer programs one data path (kernel or proxy) to match a Table.
type Balancer interface {
	// Name is "ipvs", "nftables" or "userspace".
	Name() string
	// Sync makes the data path match t exactly with minimal changes. It is
	// idempotent: syncing the same table twice changes nothing the second time.
	// Invalid frontends are skipped and reported in the returned error while the
	// valid ones are still applied, so one bad service cannot block the others.
	Sync(ctx context.Context, t Table) error
	// Close removes everything this balancer made. A daemon that is only
	// restarting should not call it: the kernel balancers' state outlives the
	// process and a new balancer adopts it without a gap; Close is for
	// leaving the cluster.
	Close() error
}

// Config configures New.
type Config struct {
	Logger *slog.Logger
	// TableName is the nftables table this balancer owns (family ip).
	// Default "swarmlet".
	TableName string
	// Owner is written into the nftables table (its base rules' comments)
	// so that ListTables can tell whose a table is: the daemon passes its
	// cluster ID, and removes its own cluster's tables of nodes that are gone
	// while leaving other clusters' alone. No spaces or quotes.
	Owner string
	// MasqueradeMark is the packet mark bit the nftables balancer sets on
	// connections it DNATs so that its postrouting chain can masquerade exactly
	// those (and not, say, Docker's own published ports). Default 0x4000.
	MasqueradeMark uint32
	// KeepSourceFrom and KeepSourceVia exempt from the nftables balancer's
	// masquerade what comes from KeepSourceFrom (the container pool) and
	// leaves through the device KeepSourceVia (the overlay): the backend is
	// a container on another host, which routes the pool back through the
	// overlay to this host, so the reply passes our conntrack anyway, and
	// the backend sees its caller's own address (as a pod calling a
	// ClusterIP does). Both or neither.
	KeepSourceFrom netip.Prefix
	KeepSourceVia  string
	// NetNSFd, when > 0, is a network namespace fd the nftables and ipvs
	// balancers program instead of the caller's namespace. Tests use it so that
	// no rule ever lands in the host's namespace; the daemon leaves it zero.
	NetNSFd int
	// UDPIdleTimeout ends idle userspace UDP sessions. Default 60s.
	UDPIdleTimeout time.Duration
}

// Kinds accepted by New.
const (
	KindAuto      = "auto"
	KindIPVS      = "ipvs"
	KindNftables  = "nftables"
	KindUserspace = "userspace"
)

// ErrIPVSUnavailable is returned by New("ipvs") when the kernel has no IPVS.
var ErrIPVSUnavailable = errors.New("ipvs is not available in this kernel (/proc/net/ip_vs is absent; try modprobe ip_vs or --lb nftables)")

// procIPVS is a variable so that tests can point detection elsewhere.
var procIPVS = "/proc/net/ip_vs"

// New returns a Balancer of the given kind; "auto" (or "") picks with Detect.
func New(kind string, cfg Config) (Balancer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TableName == "" {
		cfg.TableName = "swarmlet"
	}
	if cfg.MasqueradeMark == 0 {
		cfg.MasqueradeMark = 0x4000
	}
	if kind == "" || kind == KindAuto {
		kind = detect(cfg)
		cfg.Logger.Info("load balancer chosen", "kind", kind)
	}
	cfg.Logger = cfg.Logger.With("lb", kind) // the caller owns the component key
	switch kind {
	case KindIPVS:
		return newIPVS(cfg)
	case KindNftables:
		return newNftables(cfg)
	case KindUserspace:
		return newUserspace(cfg), nil
	default:
		return nil, fmt.Errorf("unknown load balancer kind %q (want auto, ipvs, nftables or userspace)", kind)
	}
}

// Detect returns the kind "auto" resolves to on this host: ipvs if the kernel
// has IPVS, else nftables if nf_tables answers over netlink (needs
// CAP_NET_ADMIN), else the userspace proxy, which works everywhere.
func Detect() string { return detect(Config{}) }

func detect(cfg Config) string {
	if _, err := os.Stat(procIPVS); err == nil {
		return KindIPVS
	}
	if err := probeNftables(cfg); err == nil {
		return KindNftables
	}
	return KindUserspace
}

// onePortOnly drops the frontends of every port (Port 0), reported as
// ErrEveryPort: for the balancers that cannot do them.
func onePortOnly(desired map[key]desiredFE) error {
	var errs []error
	for k, d := range desired {
		if k.Port == 0 {
			errs = append(errs, fmt.Errorf("frontend %s %s: %w", d.Service, k, ErrEveryPort))
			delete(desired, k)
		}
	}
	return errors.Join(errs...)
}

// key identifies a frontend. It is comparable so plans can use it as a map key.
type key struct {
	Addr  netip.Addr
	Port  uint16
	Proto string
}

func (k key) String() string {
	return k.Proto + "/" + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// desiredFE is a validated, canonical frontend: backends sorted and deduplicated
// so that reordering them in the table is not a change.
type desiredFE struct {
	Key      key
	Service  string
	Backends []netip.AddrPort
}

// normalize validates t and returns its frontends by key. Invalid or duplicate
// frontends are left out and reported in the error; the rest is still returned.
func normalize(t Table, v4only bool) (map[key]desiredFE, error) {
	out := make(map[key]desiredFE, len(t.Frontends))
	var errs []error
	for _, f := range t.Frontends {
		d, err := normalizeFrontend(f, v4only)
		if err != nil {
			errs = append(errs, fmt.Errorf("frontend %s %s:%d/%s: %w", f.Service, f.IP, f.Port, f.Proto, err))
			continue
		}
		if prev, dup := out[d.Key]; dup {
			errs = append(errs, fmt.Errorf("frontend %s %s: duplicate of service %s, ignored", f.Service, d.Key, prev.Service))
			continue
		}
		out[d.Key] = d
	}
	return out, errors.Join(errs...)
}

func normalizeFrontend(f Frontend, v4only bool) (desiredFE, error) {
	proto := strings.ToLower(f.Proto)
	if proto != "tcp" && proto != "udp" {
		return desiredFE{}, fmt.Errorf("protocol %q: want tcp or udp", f.Proto)
	}
	addr, err := toAddr(f.IP, v4only)
	if err != nil {
		return desiredFE{}, err
	}
	if v4only && addr.IsUnspecified() {
		// The kernel balancers match one destination address; a port
		// published on every node address takes one frontend per address.
		return desiredFE{}, fmt.Errorf("unspecified frontend address: the kernel balancers need one frontend per address")
	}
	if f.Port < 0 || f.Port > 65535 {
		return desiredFE{}, fmt.Errorf("port %d out of range", f.Port)
	}
	d := desiredFE{Key: key{Addr: addr, Port: uint16(f.Port), Proto: proto}, Service: f.Service}
	for _, b := range f.Backends {
		ba, err := toAddr(b.IP, v4only)
		if err != nil {
			return desiredFE{}, fmt.Errorf("backend: %w", err)
		}
		if ba.IsUnspecified() {
			return desiredFE{}, fmt.Errorf("backend %s: unspecified address", ba)
		}
		switch {
		case f.Port == 0 && b.Port != 0:
			return desiredFE{}, fmt.Errorf("backend %s port %d: a frontend of every port keeps the port (backend port 0)", ba, b.Port)
		case f.Port != 0 && (b.Port <= 0 || b.Port > 65535):
			return desiredFE{}, fmt.Errorf("backend %s port %d out of range", ba, b.Port)
		}
		d.Backends = append(d.Backends, netip.AddrPortFrom(ba, uint16(b.Port)))
	}
	slices.SortFunc(d.Backends, func(a, b netip.AddrPort) int { return a.Compare(b) })
	d.Backends = slices.Compact(d.Backends)
	return d, nil
}

func toAddr(ip net.IP, v4only bool) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("invalid IP %v", ip)
	}
	a = a.Unmap()
	if v4only && !a.Is4() {
		return netip.Addr{}, fmt.Errorf("IP %s: only IPv4 is supported by this balancer", a)
	}
	return a, nil
}

// frontendPlan is the shared, pure diff between the desired frontends and the
// ones the data path has now, each summarised by a fingerprint of its content.
type frontendPlan struct {
	Add    []desiredFE
	Update []desiredFE
	Remove []key
}

func (p frontendPlan) empty() bool { return len(p.Add)+len(p.Update)+len(p.Remove) == 0 }

// planFrontends diffs desired against current (key -> fingerprint). fp gives the
// fingerprint a desired frontend would have once applied; equal fingerprints
// mean nothing to do. Outputs are sorted so plans are deterministic.
func planFrontends(desired map[key]desiredFE, current map[key]string, fp func(desiredFE) string) frontendPlan {
	var p frontendPlan
	for k, d := range desired {
		cur, ok := current[k]
		switch {
		case !ok:
			p.Add = append(p.Add, d)
		case cur != fp(d):
			p.Update = append(p.Update, d)
		}
	}
	for k := range current {
		if _, ok := desired[k]; !ok {
			p.Remove = append(p.Remove, k)
		}
	}
	byKey := func(a, b desiredFE) int { return compareKeys(a.Key, b.Key) }
	slices.SortFunc(p.Add, byKey)
	slices.SortFunc(p.Update, byKey)
	slices.SortFunc(p.Remove, compareKeys)
	return p
}

func compareKeys(a, b key) int {
	if c := strings.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}
