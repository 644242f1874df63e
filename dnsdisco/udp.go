package dnsdisco

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpServer serves DNS on one UDP socket in place of a miekg dns.Server:
// a few readers take packets in batches (recvmmsg), answer on the spot what
// the fast path answers and send those replies in batches (sendmmsg); every
// other packet gets what the miekg server gives it, in a goroutine of its
// own (a forwarded query may wait seconds on an upstream). Batches are
// where most of the gain is: with dnsperf's load each system call carries
// several queries or replies, and a reader rarely sleeps.
type udpServer struct {
	s        *Server
	conn     *net.UDPConn
	batch    batchConn
	wildcard bool // bound to a wildcard address: replies need their source set
	readers  sync.WaitGroup
	generic  sync.WaitGroup // packets on the generic path
	stop     sync.Once
}

// batchConn is ipv4.PacketConn or ipv6.PacketConn, whichever fits the socket.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

const (
	// udpBatch is how many packets one system call reads or writes at most.
	udpBatch = 32
	// maxUDPReaders bounds the readers of one socket, one per two CPUs:
	// most of the cost of a reply is the kernel's (on loopback the sender
	// pays for the delivery too), reads of one socket are serialised, and
	// on two CPUs a second reader only took CPU from the clients: 40% more
	// CPU per query for no more queries per second.
	maxUDPReaders = 4
)

// oobSize holds either family's destination address control message, as
// the miekg server sizes it.
var oobSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface)),
	len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface)))

// serveUDP starts serving conn. The socket is bound already, so queries
// that come before the readers run wait in its buffer.
func serveUDP(s *Server, pc net.PacketConn) (*udpServer, error) {
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, errors.New("dnsdisco: not a UDP socket")
	}
	u := &udpServer{s: s, conn: conn}
	local, _ := conn.LocalAddr().(*net.UDPAddr)
	u.wildcard = local == nil || local.IP.IsUnspecified()
	if local != nil && local.IP.To4() != nil {
		u.batch = ipv4.NewPacketConn(conn)
	} else {
		u.batch = ipv6.NewPacketConn(conn)
	}
	if u.wildcard {
		// On a wildcard address a reply must leave from the address its
		// query came to, which the kernel tells only when asked. Either
		// family may fail on a socket of the other one.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		if err6 != nil && err4 != nil {
			return nil, err4
		}
	}
	n := min(max(runtime.GOMAXPROCS(0)/2, 1), maxUDPReaders)
	u.readers.Add(n)
	for range n {
		go func() {
			defer u.readers.Done()
			if err := u.read(); err != nil {
				s.log.Error("dns udp reader stopped", "addr", conn.LocalAddr().String(), "err", err)
			}
		}()
	}
	return u, nil
}

// close stops the readers, waits for the queries in flight to be answered
// (as miekg's Shutdown does), then closes the socket.
func (u *udpServer) close() error {
	var err error
	u.stop.Do(func() {
		// A deadline in the past wakes the readers without closing the
		// socket under the replies still to be sent.
		_ = u.conn.SetReadDeadline(time.Unix(1, 0))
		u.readers.Wait()
		u.generic.Wait()
		err = u.conn.Close()
	})
	return err
}

// read serves the socket until close. It returns an error only if reading
// fails for another reason.
func (u *udpServer) read() error {
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch) // out's buffers, kept to be reused
	for i := range in {
		// The miekg server reads into MinMsgSize buffers: a longer query
		// is cut the same way whichever path it takes.
		in[i].Buffers = [][]byte{make([]byte, dns.MinMsgSize)}
		if u.wildcard {
			in[i].OOB = make([]byte, oobSize)
		}
		out[i].Buffers = make([][]byte, 1)
		bufs[i] = make([]byte, 0, 512)
	}
	for {
		n, err := u.batch.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as the miekg loop decides
				continue
			}
			return err
		}
		ix := u.s.table.Load()
		w := 0
		for i := range n {
			m := &in[i]
			remote, _ := m.Addr.(*net.UDPAddr)
			if remote == nil {
				continue
			}
			pkt := m.Buffers[0][:m.N]
			if len(ix.scopes) > 0 && ix.prefixOf(sourceAddr(remote)) != "" {
				// A caller with a scope (a stack's task) may mean a short name:
				// its answers are the generic path's.
				u.serveGeneric(pkt, remote, m.OOB[:m.NN])
				continue
			}
			resp, rep, ok := u.s.answerFast(ix, pkt, bufs[w], func() bool { return u.s.mayRecurse(remote) })
			if !ok {
				u.serveGeneric(pkt, remote, m.OOB[:m.NN])
				continue
			}
			bufs[w] = resp[:0]
			if u.s.cfg.Observe != nil {
				u.s.cfg.Observe(qtypeLabel(rep.qtype), rep.kind)
			}
			out[w].Buffers[0], out[w].Addr, out[w].OOB = resp, remote, nil
			if u.wildcard {
				out[w].OOB = correctSource(m.OOB[:m.NN])
			}
			w++
		}
		for sent := 0; sent < w; {
			k, err := u.batch.WriteBatch(out[sent:w], 0)
			sent += k
			if err != nil {
				// The first unsent reply failed: drop it, send the rest.
				u.s.log.Debug("write dns response", "remote", out[sent].Addr.String(), "err", err)
				sent++
			}
		}
	}
}

// serveGeneric gives a packet the fast path left what the miekg server
// gives it (its serveDNS): nothing to shorter than a header or to a
// response, FORMERR or NOTIMP to what its accept checks reject or what does
// not unpack, and the rest to ServeDNS, each in a goroutine of its own.
func (u *udpServer) serveGeneric(pkt []byte, remote *net.UDPAddr, oob []byte) {
	if len(pkt) < 12 {
		return
	}
	m := append([]byte(nil), pkt...)
	w := &udpWriter{u: u, remote: remote}
	if u.wildcard {
		w.oob = correctSource(oob)
	}
	u.generic.Add(1)
	go func() {
		defer u.generic.Done()
		dh := dns.Header{Id: binary.BigEndian.Uint16(m), Bits: binary.BigEndian.Uint16(m[2:]),
			Qdcount: binary.BigEndian.Uint16(m[4:]), Ancount: binary.BigEndian.Uint16(m[6:]),
			Nscount: binary.BigEndian.Uint16(m[8:]), Arcount: binary.BigEndian.Uint16(m[10:])}
		req := new(dns.Msg)
		switch action := dns.DefaultMsgAcceptFunc(dh); action {
		case dns.MsgAccept:
			if err := req.Unpack(m); err == nil {
				break
			}
			fallthrough
		case dns.MsgReject, dns.MsgRejectNotImplemented:
			if action != dns.MsgAccept {
				// The header alone, as the miekg server has it then.
				_ = req.Unpack(m[:12])
			}
			opcode := req.Opcode
			req.SetRcodeFormatError(req)
			req.Zero = false
			if action == dns.MsgRejectNotImplemented {
				req.Opcode = opcode
				req.Rcode = dns.RcodeNotImplemented
			}
			req.Ns, req.Answer, req.Extra = nil, nil, nil
			_ = w.WriteMsg(req)
			return
		case dns.MsgIgnore:
			return
		}
		u.s.ServeDNS(w, req)
	}()
}

// udpWriter is the dns.ResponseWriter of one query on the generic path.
type udpWriter struct {
	u      *udpServer
	remote *net.UDPAddr
	oob    []byte // the source address of the reply, on a wildcard socket
	closed bool
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.u.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return w.remote }

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	if w.closed {
		return 0, errors.New("dnsdisco: write after close")
	}
	n, _, err := w.u.conn.WriteMsgUDP(b, w.oob, w.remote)
	return n, err
}

// Close marks the writer done; the socket is the server's.
func (w *udpWriter) Close() error {
	if w.closed {
		return errors.New("dnsdisco: close after close")
	}
	w.closed = true
	return nil
}

func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

// correctSource turns the control message of a query that came to a
// wildcard socket into one that sends the reply from the address the query
// came to (nil when the kernel told none), as the miekg server does.
func correctSource(oob []byte) []byte {
	if len(oob) == 0 {
		return nil
	}
	var dst net.IP
	if cm6 := new(ipv6.ControlMessage); cm6.Parse(oob) == nil && cm6.Dst != nil {
		dst = cm6.Dst
	} else if cm4 := new(ipv4.ControlMessage); cm4.Parse(oob) == nil && cm4.Dst != nil {
		dst = cm4.Dst
	}
	switch {
	case dst == nil:
		return nil
	case dst.To4() == nil:
		return (&ipv6.ControlMessage{Src: dst}).Marshal()
	default:
		return (&ipv4.ControlMessage{Src: dst}).Marshal()
	}
}
