package ipam

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Defaults for the cluster's address plan (k3s uses the same numbers, so an
// operator who knows one knows the other).
var (
	DefaultPool         = netip.MustParsePrefix("10.42.0.0/16")
	DefaultServiceRange = netip.MustParsePrefix("10.43.0.0/16")
)

const (
	// DefaultNodeBits is the per-node subnet length: 253 containers per node.
	DefaultNodeBits = 24
	// MaxNodeBits is the longest per-node prefix accepted: a /28 still holds
	// the VTEP (.0), the gateway (.1), 13 containers and the broadcast.
	MaxNodeBits = 28
)

// ErrPoolFull is returned (wrapped) by AllocateSubnet when every subnet of
// the pool is taken.
var ErrPoolFull = errors.New("container pool is full")

// reserved ranges a container pool may never touch: the kernel treats them
// specially (this network, loopback, link-local, multicast, reserved and
// broadcast), so a container there would be unreachable or worse.
var reserved = []Range{
	{"\"this network\" 0.0.0.0/8", netip.MustParsePrefix("0.0.0.0/8")},
	{"loopback 127.0.0.0/8", netip.MustParsePrefix("127.0.0.0/8")},
	{"link-local 169.254.0.0/16", netip.MustParsePrefix("169.254.0.0/16")},
	{"multicast 224.0.0.0/4", netip.MustParsePrefix("224.0.0.0/4")},
	{"reserved 240.0.0.0/4", netip.MustParsePrefix("240.0.0.0/4")},
}

// ValidatePool checks that pool can serve as the container pool with one
// subnet of length nodeBits per node. It is pure, so init and the FSM can
// call it with the same answer everywhere.
func ValidatePool(pool netip.Prefix, nodeBits int) error {
	if !pool.IsValid() {
		return errors.New("container pool is not set: give a CIDR such as " + DefaultPool.String())
	}
	if !pool.Addr().Is4() {
		return fmt.Errorf("container pool %s is not IPv4: the cluster network is IPv4 only; use a CIDR such as %s", pool, DefaultPool)
	}
	if pool != pool.Masked() {
		return fmt.Errorf("container pool %s has host bits set: did you mean %s?", pool, pool.Masked())
	}
	for _, r := range reserved {
		if pool.Overlaps(r.Prefix) {
			return fmt.Errorf("container pool %s overlaps the %s range: choose a private range such as %s", pool, r.Name, DefaultPool)
		}
	}
	if nodeBits < pool.Bits() {
		return fmt.Errorf("per-node subnet /%d is larger than the container pool %s: use a per-node prefix of /%d or longer", nodeBits, pool, pool.Bits())
	}
	if nodeBits > MaxNodeBits {
		return fmt.Errorf("per-node subnet /%d is too small for containers: use /%d or shorter (default /%d)", nodeBits, MaxNodeBits, DefaultNodeBits)
	}
	return nil
}

// Range is a named address range that the container pool must not overlap:
// the service range, a node's own address (as a /32), the underlay network.
type Range struct {
	Name   string // what it is, for the error: "the service range", "node n1's address"
	Prefix netip.Prefix
}

// AddrRange is the Range of one address.
func AddrRange(name string, a netip.Addr) Range {
	return Range{Name: name, Prefix: netip.PrefixFrom(a, a.BitLen())}
}

// CheckDisjoint refuses a pool that overlaps any of others, naming the first
// clash. A pool that held a node's own address would route that node's
// traffic to itself into the overlay; one that held the service range would
// make VIPs and container addresses ambiguous.
func CheckDisjoint(pool netip.Prefix, others ...Range) error {
	for _, r := range others {
		if !r.Prefix.IsValid() || !pool.Overlaps(r.Prefix) {
			continue
		}
		if r.Prefix.IsSingleIP() {
			return fmt.Errorf("container pool %s contains %s %s: choose a pool that holds no node address", pool, r.Name, r.Prefix.Addr())
		}
		return fmt.Errorf("container pool %s overlaps %s %s: choose ranges that do not overlap", pool, r.Name, r.Prefix)
	}
	return nil
}

// Capacity is the number of per-node subnets a valid pool holds.
func Capacity(pool netip.Prefix, nodeBits int) int {
	return 1 << (nodeBits - pool.Bits())
}

// AllocateSubnet returns the lowest subnet of length nodeBits inside pool
// that overlaps none of taken, or an error wrapping ErrPoolFull.
//
// It is a pure function of its arguments (taken may be in any order and hold
// duplicates, foreign prefixes and prefixes of other lengths), so the FSM can
// call it inside Apply and every manager allocates the same subnet. Lowest
// first means a freed subnet is reused before the pool grows: the pool fills
// densely and a small pool lasts.
func AllocateSubnet(pool netip.Prefix, nodeBits int, taken []netip.Prefix) (netip.Prefix, error) {
	if err := ValidatePool(pool, nodeBits); err != nil {
		return netip.Prefix{}, err
	}
	type span struct{ lo, hi uint64 } // [lo, hi)
	start := uint64(u32(pool.Addr()))
	end := start + 1<<(32-pool.Bits())
	size := uint64(1) << (32 - nodeBits)
	var spans []span
	for _, p := range taken {
		if !p.IsValid() || !p.Addr().Is4() || !p.Overlaps(pool) {
			continue
		}
		p = p.Masked()
		lo := uint64(u32(p.Addr()))
		spans = append(spans, span{lo, lo + 1<<(32-p.Bits())})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	// Walk the taken spans in address order, moving the candidate past each
	// one it overlaps: spans are sorted by start, so the first span that
	// starts beyond the candidate proves it free.
	c := start
	for _, s := range spans {
		if s.hi <= c {
			continue
		}
		if s.lo >= c+size {
			break
		}
		c = start + (s.hi-start+size-1)/size*size
	}
	if c+size > end {
		return netip.Prefix{}, fmt.Errorf("%w: all %d /%d subnets of %s are taken; remove nodes that are gone or choose a larger pool at init",
			ErrPoolFull, Capacity(pool, nodeBits), nodeBits, pool)
	}
	return netip.PrefixFrom(addr4(uint32(c)), nodeBits), nil
}

// Gateway is the subnet's first host address, where the node's container
// bridge sits (Docker's own choice for a bridge network's gateway).
func Gateway(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
