package node

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// localNets answers "is this address this host or one of its containers?": the DNS
// server resolves names outside the cluster only for them, so it is no open
// resolver for whoever can reach the advertise address. This host: loopback and
// the addresses of its interfaces. Its containers: the subnets of its bridge
// interfaces (Docker's bridges, the container network's), which is where a
// container's query comes from.
type localNets struct {
	mu      sync.Mutex
	checked time.Time
	ips     map[netip.Addr]bool
	bridges []netip.Prefix
}

// localNetsRefresh bounds how stale the view is: Docker adds bridges as networks
// are created.
const localNetsRefresh = 10 * time.Second

func (l *localNets) allow(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) > localNetsRefresh {
		l.ips, l.bridges = scanInterfaces()
		l.checked = time.Now()
	}
	if l.ips[a] {
		return true
	}
	for _, p := range l.bridges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func scanInterfaces() (map[netip.Addr]bool, []netip.Prefix) {
	ips := map[netip.Addr]bool{}
	var bridges []netip.Prefix
	ifs, err := net.Interfaces()
	if err != nil {
		return ips, nil
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		_, statErr := os.Stat(filepath.Join("/sys/class/net", ifc.Name, "bridge"))
		bridge := statErr == nil
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			ips[ip] = true
			if bridge {
				ones, _ := n.Mask.Size()
				bridges = append(bridges, netip.PrefixFrom(ip, ones).Masked())
			}
		}
	}
	return ips, bridges
}
