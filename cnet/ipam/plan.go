package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// MaxServiceBits is the longest service range accepted: a /30 holds two VIPs
// (the network and broadcast addresses are never given out).
const MaxServiceBits = 30

// ValidateServiceRange checks that r can hold service VIPs. VIPs must be
// routable addresses: a loopback VIP (the old 127.128.0.0/16 default) is, seen
// from inside a container, the container's own loopback, so a caller would
// silently talk to itself. It is pure, for init and the FSM alike.
func ValidateServiceRange(r netip.Prefix) error {
	if !r.IsValid() {
		return errors.New("service range is not set: give a CIDR such as " + DefaultServiceRange.String())
	}
	if !r.Addr().Is4() {
		return fmt.Errorf("service range %s is not IPv4: use a CIDR such as %s", r, DefaultServiceRange)
	}
	if r != r.Masked() {
		return fmt.Errorf("service range %s has host bits set: did you mean %s?", r, r.Masked())
	}
	for _, x := range reserved {
		if r.Overlaps(x.Prefix) {
			return fmt.Errorf("service range %s overlaps the %s range: a container reaching such a VIP would not reach the cluster; choose a private range such as %s", r, x.Name, DefaultServiceRange)
		}
	}
	if r.Bits() > MaxServiceBits {
		return fmt.Errorf("service range %s is too small: use /%d or shorter (default %s)", r, MaxServiceBits, DefaultServiceRange)
	}
	return nil
}

// ValidatePlan checks a whole address plan at once: the pool, its per-node
// prefix, the service range, and that the pool holds none of others (node
// addresses, as AddrRange) nor the service range, nor does the service range.
func ValidatePlan(pool netip.Prefix, nodeBits int, services netip.Prefix, others ...Range) error {
	if err := ValidatePool(pool, nodeBits); err != nil {
		return err
	}
	if err := ValidateServiceRange(services); err != nil {
		return err
	}
	if err := CheckDisjoint(pool, append([]Range{{Name: "the service range", Prefix: services}}, others...)...); err != nil {
		return err
	}
	for _, r := range others {
		if r.Prefix.IsValid() && services.Overlaps(r.Prefix) {
			return fmt.Errorf("service range %s overlaps %s %s: a VIP could be that address; choose ranges that do not overlap", services, r.Name, r.Prefix)
		}
	}
	return nil
}
