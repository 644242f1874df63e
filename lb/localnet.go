package lb

import (
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
)

// LocalnetSetter sets route_localnet only on the interfaces that need it: those a
// DNATed connection from a 127/8 VIP leaves by towards a backend (see
// EnableRouteLocalnet for why). The kernel checks the outgoing device's setting
// (or "all"), so setting it per device leaves every other interface refusing 127/8
// traffic, as it does by default. It never unsets: a backend may come back.
type LocalnetSetter struct {
	mu   sync.Mutex
	done map[string]bool
	// sysctl is /proc/sys/net/ipv4/conf by default; tests point it elsewhere.
	sysctl string
}

// For makes sure route_localnet is on for the interface of the route to each
// backend, loopback excepted, and returns the interfaces it turned it on for.
func (s *LocalnetSetter) For(backends []netip.Addr) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = map[string]bool{}
	}
	dir := s.sysctl
	if dir == "" {
		dir = "/proc/sys/net/ipv4/conf"
	}
	var changed []string
	var firstErr error
	seen := map[netip.Addr]bool{}
	for _, a := range backends {
		if !a.Is4() || a.IsLoopback() || seen[a] {
			continue
		}
		seen[a] = true
		name, err := outInterface(a)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if name == "" || name == "lo" || s.done[name] {
			continue
		}
		if err := os.WriteFile(dir+"/"+name+"/route_localnet", []byte("1\n"), 0o644); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("enable route_localnet on %s: %w", name, err)
			}
			continue
		}
		s.done[name] = true
		changed = append(changed, name)
	}
	return changed, firstErr
}

// outInterface is the name of the interface the kernel routes a to.
func outInterface(a netip.Addr) (string, error) {
	routes, err := netlink.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("route to %s: %v", a, err)
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("interface of the route to %s: %w", a, err)
	}
	return link.Attrs().Name, nil
}
