package dnsdisco

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// udpReaders serve one UDP socket. Several goroutines read it, answer what
// the fast path answers themselves, and hand the rest to the miekg server's
// loop as its dns.Reader (DecorateReader), so every other query gets exactly
// the handling it had before: the accept checks, FORMERR for junk, a
// goroutine of its own (a forwarded query may wait seconds on an upstream).
type udpReaders struct {
	dns.Reader // the server's own, for ReadTCP (never called: UDP only)
	s          *Server
	n          int
	once       sync.Once
	slow       chan udpPacket
	stop       chan struct{} // closed when the readers stop
	err        error         // why, once stop is closed
	wg         sync.WaitGroup
}

type udpPacket struct {
	m    []byte
	sess *dns.SessionUDP
}

func newUDPReaders(s *Server) *udpReaders {
	// Each reader answers in turn what it read; more than the CPUs would
	// only queue on the socket.
	n := min(max(runtime.GOMAXPROCS(0), 2), 8)
	if v, err := strconv.Atoi(os.Getenv("DNP_READERS")); err == nil {
		n = v
	}
	return &udpReaders{s: s, n: n,
		slow: make(chan udpPacket), stop: make(chan struct{})}
}

// decorate is the dns.Server's DecorateReader.
func (r *udpReaders) decorate(next dns.Reader) dns.Reader { r.Reader = next; return r }

// ReadUDP is what the miekg loop reads: the packets the fast path left. The
// readers start on the first call, once the server has set its socket
// options. The timeout is the loop's way to notice a shutdown; the readers
// notice it by the read deadline Shutdown sets, and stop.
func (r *udpReaders) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	r.once.Do(func() { r.start(conn) })
	select {
	case p := <-r.slow:
		return p.m, p.sess, nil
	case <-r.stop:
		return nil, nil, r.err
	}
}

func (r *udpReaders) start(conn *net.UDPConn) {
	local, _ := conn.LocalAddr().(*net.UDPAddr)
	// On a wildcard address the reply must leave from the address the
	// query came to, which takes the session's control message; on a
	// bound one the kernel picks it.
	wildcard := local == nil || local.IP.IsUnspecified()
	var stopOnce sync.Once
	for range r.n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			err := r.read(conn, wildcard)
			stopOnce.Do(func() { r.err = err; close(r.stop) })
		}()
	}
}

// wait returns when every reader has returned; after Shutdown.
func (r *udpReaders) wait() { r.wg.Wait() }

// read serves conn until a read fails for good.
func (r *udpReaders) read(conn *net.UDPConn, wildcard bool) error {
	// The miekg server reads into MinMsgSize buffers: a longer query is
	// cut the same way whichever path it takes.
	buf := make([]byte, dns.MinMsgSize)
	out := make([]byte, 0, 1024)
	for {
		n, sess, err := dns.ReadFromSessionUDP(conn, buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, os.ErrDeadlineExceeded) && ne.Temporary() { //nolint:staticcheck // as the miekg loop decides
				continue
			}
			return err
		}
		remote := sess.RemoteAddr().(*net.UDPAddr)
		resp, rep, ok := r.s.answerFast(r.s.table.Load(), buf[:n], out, func() bool { return r.s.mayRecurse(remote) })
		if !ok {
			p := udpPacket{m: append([]byte(nil), buf[:n]...), sess: sess}
			select {
			case r.slow <- p:
			case <-r.stop:
				return nil
			}
			continue
		}
		out = resp[:0]
		if r.s.cfg.Observe != nil {
			r.s.cfg.Observe(qtypeLabel(rep.qtype), rep.kind)
		}
		if wildcard {
			_, err = dns.WriteToSessionUDP(conn, resp, sess)
		} else {
			_, err = conn.WriteToUDPAddrPort(resp, remote.AddrPort())
		}
		if err != nil {
			r.s.log.Debug("write dns response", "remote", remote.String(), "err", err)
		}
	}
}
