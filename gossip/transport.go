package gossip

import (
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport is memberlist's NetTransport with one change: TCP dials (join,
// push/pull, fallback pings) leave from the bind address. NetTransport dials
// with no local address, so the kernel would pick the source (127.0.0.1 for
// any loopback peer), and firewall rules keyed on address pairs could not cut
// one node off from another. UDP needs no change: NetTransport sends from its
// bound listener socket.
type transport struct {
	*memberlist.NetTransport
	local *net.TCPAddr
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport binds UDP and TCP on ip:port. With port 0 it retries, because
// NetTransport picks the port with TCP and then binds UDP on the same number,
// which can already be taken.
func newTransport(ip net.IP, port int, logger *log.Logger) (*transport, error) {
	cfg := &memberlist.NetTransportConfig{
		BindAddrs: []string{ip.String()},
		BindPort:  port,
		Logger:    logger,
	}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(cfg)
		if err == nil {
			return &transport{NetTransport: nt, local: &net.TCPAddr{IP: ip}}, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("gossip: bind %s: %w", net.JoinHostPort(ip.String(), fmt.Sprint(port)), err)
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: t.local}
	return d.Dial("tcp", a.Addr)
}

// port is the port actually bound (differs from the configured one when that was 0).
func (t *transport) port() int { return t.GetAutoBindPort() }
