package httpapi

import (
	"net"

	"github.com/swarmlet/swarmlet/api"
)

// checkRef vets a node or service reference taken from a path before it is looked
// up: an ID, a name, a prefix, a host name or an address. It is never joined into
// a path or a query; the check is for a clear refusal of anything else (slashes,
// control characters, a megabyte of junk).
func checkRef(what, ref string) error {
	if ref == "" || len(ref) > 253 {
		return badRequest("invalid %s reference: 1-253 characters", what)
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return badRequest("invalid %s reference %.64q: use an ID, a name or an address", what, ref)
		}
	}
	return nil
}

// checkSelf vets what a node says of itself when it joins or registers: the
// cluster dials these addresses and shows these names.
func checkSelf(n api.Node) error {
	if ip := net.ParseIP(n.Addr); ip == nil || ip.IsUnspecified() {
		return badRequest("node address %.64q is not an IP address", n.Addr)
	}
	for _, p := range []int{n.APIPort, n.RaftPort, n.GossipPort} {
		if p < 1 || p > 65535 {
			return badRequest("node port %d is out of range", p)
		}
	}
	if n.DNSPort < 0 || n.DNSPort > 65535 {
		return badRequest("DNS port %d is out of range", n.DNSPort)
	}
	if len(n.Hostname) > 253 || len(n.Engine) > 32 {
		return badRequest("node host name or engine name too long")
	}
	for _, s := range []string{n.Hostname, n.Engine} {
		if hasControl(s) {
			return badRequest("node host name or engine name holds a control character")
		}
	}
	return checkEngineInfo(n)
}

// Bounds on what a node says of its engine: every node's record is in every
// assignment and snapshot.
const (
	maxEngineLabels     = 100
	maxEngineLabelBytes = 1024
	maxPlatformBytes    = 64
)

// checkEngineInfo vets the platform and engine labels a node reports. They are
// the node's own word (as Swarm's engine labels): node labels, which only the
// operator sets, are what a constraint that must be trusted should use.
func checkEngineInfo(n api.Node) error {
	if len(n.Platform.OS) > maxPlatformBytes || len(n.Platform.Arch) > maxPlatformBytes || hasControl(n.Platform.OS) || hasControl(n.Platform.Arch) {
		return badRequest("node platform %.64q/%.64q: at most %d bytes each, no control characters", n.Platform.OS, n.Platform.Arch, maxPlatformBytes)
	}
	if len(n.EngineLabels) > maxEngineLabels {
		return badRequest("node reports %d engine labels, at most %d", len(n.EngineLabels), maxEngineLabels)
	}
	for k, v := range n.EngineLabels {
		if k == "" || len(k)+len(v) > maxEngineLabelBytes || hasControl(k) || hasControl(v) {
			return badRequest("engine label %.64q: a non-empty key, at most %d bytes with its value, no control characters", k, maxEngineLabelBytes)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
