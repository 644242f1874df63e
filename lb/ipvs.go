package lb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// IPVS has no notion of an owner or a table, and other software (kube-proxy,
// Docker) may keep virtual services in the same namespace. swarmlet tags the
// services it creates with this netmask, a field IPVS uses only for persistent
// services (swarmlet never sets persistence), so that a restarted daemon
// adopts exactly its own services and never touches anyone else's.
const ipvsOwnerNetmask = 0xfffffffe

// ipvsService is the part of an IPVS virtual service the plan cares about.
type ipvsService struct {
	Key   key
	Sched string
	Dests map[netip.AddrPort]int // destination -> weight
}

type ipvsOpKind int

const (
	ipvsDelService ipvsOpKind = iota
	ipvsAddService
	ipvsUpdateService
	ipvsDelDest
	ipvsAddDest
	ipvsUpdateDest
)

func (k ipvsOpKind) String() string {
	return [...]string{"del-service", "add-service", "update-service", "del-dest", "add-dest", "update-dest"}[k]
}

// ipvsOp is one IPVS netlink call.
type ipvsOp struct {
	Kind   ipvsOpKind
	Key    key
	Sched  string         // services
	Dest   netip.AddrPort // destinations
	Weight int
}

func (o ipvsOp) String() string {
	switch o.Kind {
	case ipvsDelService, ipvsAddService, ipvsUpdateService:
		return fmt.Sprintf("%s %s %s", o.Kind, o.Key, o.Sched)
	default:
		return fmt.Sprintf("%s %s %s w=%d", o.Kind, o.Key, o.Dest, o.Weight)
	}
}

// planIPVS is the pure diff for IPVS: desired frontends against the services
// read from the kernel. Services go first (removals before additions, so a
// frontend that moved protocol or address frees nothing it needs), then each
// service's destinations. Every backend gets weight 1 under round-robin.
func planIPVS(desired map[key]desiredFE, current map[key]ipvsService) []ipvsOp {
	const sched, weight = ipvs.RoundRobin, 1
	var svcOps, destOps []ipvsOp
	for k, cur := range current {
		if _, ok := desired[k]; !ok {
			svcOps = append(svcOps, ipvsOp{Kind: ipvsDelService, Key: k, Sched: cur.Sched})
		}
	}
	for k, d := range desired {
		cur, ok := current[k]
		switch {
		case !ok:
			svcOps = append(svcOps, ipvsOp{Kind: ipvsAddService, Key: k, Sched: sched})
		case cur.Sched != sched:
			svcOps = append(svcOps, ipvsOp{Kind: ipvsUpdateService, Key: k, Sched: sched})
		}
		want := make(map[netip.AddrPort]bool, len(d.Backends))
		for _, be := range d.Backends {
			want[be] = true
			w, have := cur.Dests[be]
			switch {
			case !have:
				destOps = append(destOps, ipvsOp{Kind: ipvsAddDest, Key: k, Dest: be, Weight: weight})
			case w != weight:
				destOps = append(destOps, ipvsOp{Kind: ipvsUpdateDest, Key: k, Dest: be, Weight: weight})
			}
		}
		for be := range cur.Dests {
			if !want[be] {
				destOps = append(destOps, ipvsOp{Kind: ipvsDelDest, Key: k, Dest: be})
			}
		}
	}
	order := func(a, b ipvsOp) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), compareKeys(a.Key, b.Key), a.Dest.Compare(b.Dest))
	}
	slices.SortFunc(svcOps, order)
	slices.SortFunc(destOps, func(a, b ipvsOp) int {
		// Group by service so a service's removals precede its additions.
		return cmp.Or(compareKeys(a.Key, b.Key), cmp.Compare(a.Kind, b.Kind), a.Dest.Compare(b.Dest))
	})
	return append(svcOps, destOps...)
}

// ipvsHandle is the slice of *ipvs.Handle the balancer uses; tests fake it.
type ipvsHandle interface {
	GetServices() ([]*ipvs.Service, error)
	GetDestinations(*ipvs.Service) ([]*ipvs.Destination, error)
	NewService(*ipvs.Service) error
	UpdateService(*ipvs.Service) error
	DelService(*ipvs.Service) error
	NewDestination(*ipvs.Service, *ipvs.Destination) error
	UpdateDestination(*ipvs.Service, *ipvs.Destination) error
	DelDestination(*ipvs.Service, *ipvs.Destination) error
}

type ipvsBalancer struct {
	log *slog.Logger
	mu  sync.Mutex
	h   ipvsHandle
}

func newIPVS(cfg Config) (Balancer, error) {
	if _, err := os.Stat(procIPVS); err != nil {
		return nil, ErrIPVSUnavailable
	}
	path := ""
	if cfg.NetNSFd > 0 {
		path = fmt.Sprintf("/proc/self/fd/%d", cfg.NetNSFd)
	}
	h, err := ipvs.New(path)
	if err != nil {
		return nil, fmt.Errorf("ipvs netlink: %w", err)
	}
	return &ipvsBalancer{log: cfg.Logger, h: h}, nil
}

func (b *ipvsBalancer) Name() string { return KindIPVS }

// readState returns the services this balancer owns, with their destinations.
func (b *ipvsBalancer) readState() (map[key]ipvsService, map[key]*ipvs.Service, error) {
	svcs, err := b.h.GetServices()
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	cur := map[key]ipvsService{}
	raw := map[key]*ipvs.Service{}
	for _, s := range svcs {
		if s.Netmask != ipvsOwnerNetmask || s.FWMark != 0 || s.AddressFamily != unix.AF_INET {
			continue
		}
		k, ok := ipvsKey(s)
		if !ok {
			continue
		}
		dests, err := b.h.GetDestinations(s)
		if err != nil {
			return nil, nil, fmt.Errorf("list destinations of %s: %w", k, err)
		}
		is := ipvsService{Key: k, Sched: s.SchedName, Dests: map[netip.AddrPort]int{}}
		for _, d := range dests {
			if a, ok := netip.AddrFromSlice(d.Address); ok {
				is.Dests[netip.AddrPortFrom(a.Unmap(), d.Port)] = d.Weight
			}
		}
		cur[k], raw[k] = is, s
	}
	return cur, raw, nil
}

func ipvsKey(s *ipvs.Service) (key, bool) {
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return key{}, false
	}
	var proto string
	switch s.Protocol {
	case unix.IPPROTO_TCP:
		proto = "tcp"
	case unix.IPPROTO_UDP:
		proto = "udp"
	default:
		return key{}, false
	}
	return key{Addr: a.Unmap(), Port: s.Port, Proto: proto}, true
}

func ipvsServiceOf(k key, sched string) *ipvs.Service {
	a := k.Addr.As4()
	return &ipvs.Service{
		Address:       net.IP(a[:]),
		Protocol:      uint16(protoNum(k.Proto)),
		Port:          k.Port,
		SchedName:     sched,
		AddressFamily: unix.AF_INET,
		Netmask:       ipvsOwnerNetmask,
	}
}

func ipvsDestOf(d netip.AddrPort, weight int) *ipvs.Destination {
	a := d.Addr().As4()
	return &ipvs.Destination{
		Address:         net.IP(a[:]),
		Port:            d.Port(),
		Weight:          weight,
		ConnectionFlags: ipvs.ConnectionFlagMasq,
		AddressFamily:   unix.AF_INET,
	}
}

// Sync applies planIPVS. IPVS has no transactions, so a failed op is logged,
// the rest still run, and the next Sync (which re-reads the kernel) retries.
// As with nftables, a VIP must be a local address (127/8 VIPs are) for IPVS to
// see its packets, and masquerading needs net.ipv4.vs.conntrack=1 when the
// nftables masquerade is to apply to it.
func (b *ipvsBalancer) Sync(ctx context.Context, t Table) error {
	desired, verr := normalize(t, true)
	verr = errors.Join(verr, onePortOnly(desired))
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, _, err := b.readState()
	if err != nil {
		return fmt.Errorf("ipvs sync: %w", err)
	}
	ops := planIPVS(desired, cur)
	var errs []error
	for _, op := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.do(op); err != nil {
			errs = append(errs, fmt.Errorf("ipvs %s: %w", op, err))
		}
	}
	if len(ops) > 0 {
		b.log.Info("ipvs synced", "frontends", len(desired), "ops", len(ops), "failed", len(errs))
	}
	return errors.Join(append(errs, verr)...)
}

func (b *ipvsBalancer) do(op ipvsOp) error {
	svc := ipvsServiceOf(op.Key, op.Sched)
	if svc.SchedName == "" {
		svc.SchedName = ipvs.RoundRobin
	}
	switch op.Kind {
	case ipvsAddService:
		return b.h.NewService(svc)
	case ipvsUpdateService:
		return b.h.UpdateService(svc)
	case ipvsDelService:
		return b.h.DelService(svc)
	case ipvsAddDest:
		return b.h.NewDestination(svc, ipvsDestOf(op.Dest, op.Weight))
	case ipvsUpdateDest:
		return b.h.UpdateDestination(svc, ipvsDestOf(op.Dest, op.Weight))
	case ipvsDelDest:
		return b.h.DelDestination(svc, ipvsDestOf(op.Dest, 0))
	}
	return fmt.Errorf("unknown op %d", op.Kind)
}

// Close deletes the virtual services this balancer owns.
func (b *ipvsBalancer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, raw, err := b.readState()
	if err != nil {
		return fmt.Errorf("ipvs close: %w", err)
	}
	var errs []error
	for k, s := range raw {
		if err := b.h.DelService(s); err != nil {
			errs = append(errs, fmt.Errorf("ipvs close: delete %s: %w", k, err))
		}
	}
	if c, ok := b.h.(interface{ Close() }); ok {
		c.Close()
	}
	return errors.Join(errs...)
}
