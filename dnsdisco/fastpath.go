package dnsdisco

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"

	"github.com/miekg/dns"
)

// The UDP fast path answers the queries a cluster's containers send all day
// (A and AAAA of a service or task set, and the NXDOMAIN and NODATA answers
// of names in the zone) straight from the wire: it reads the header and the
// one question, looks the name up, and writes the reply from records packed
// when the table was built, with no dns.Msg, no goroutine per packet and no
// allocation. The generic path costs several microseconds and a dozen
// allocations per query, most of it in building and packing messages, and
// lost to dnsmasq answering the same names from a hosts file (issue 14).
//
// It gives the bytes the generic path gives: the same header bits, the
// question as sent, the records in random order, the same truncation, the
// same name compression. Whatever it does not recognise entirely it leaves
// to the generic path (handleFor), which stays the reference: the tests
// compare the two on a table of queries.

// fastMaxName bounds the question names the fast path reads, in wire bytes;
// longer ones (up to the protocol's 255) take the generic path.
const fastMaxName = 250

// fastQuery is a query the fast path recognised.
type fastQuery struct {
	id       uint16
	bits     uint16 // the RD and CD bits of the query, in place
	qname    []byte // the name as sent, wire form
	question []byte // qname, type and class as sent
	qtype    uint16
	edns     bool
	size     int // the largest reply the client takes
}

// Header bits.
const (
	hdrQR     = 1 << 15
	hdrAA     = 1 << 10
	hdrTC     = 1 << 9
	hdrRD     = 1 << 8
	hdrRA     = 1 << 7
	hdrCD     = 1 << 4
	hdrOpcode = 0xF << 11
)

// parseFast reads req if it has the shape the fast path answers: a standard
// query with one question of class IN whose name has only host-name bytes,
// and nothing else but an OPT record of version 0 without options. The name
// goes into lower in lower case and dotted form ("web.swarmlet."), and the
// returned slice is that. Anything else is not ok and takes the generic path,
// which also gives the errors (FORMERR, NOTIMP, BADVERS).
func parseFast(req []byte, lower *[fastMaxName + 1]byte) (q fastQuery, name []byte, ok bool) {
	if len(req) < 12 {
		return q, nil, false
	}
	bits := binary.BigEndian.Uint16(req[2:])
	if bits&(hdrQR|hdrOpcode) != 0 ||
		binary.BigEndian.Uint16(req[4:]) != 1 || // one question
		binary.BigEndian.Uint16(req[6:])|binary.BigEndian.Uint16(req[8:]) != 0 {
		return q, nil, false
	}
	ar := binary.BigEndian.Uint16(req[10:])
	if ar > 1 {
		return q, nil, false
	}
	q.id = binary.BigEndian.Uint16(req)
	q.bits = bits & (hdrRD | hdrCD)

	off, n := 12, 0
	for {
		if off >= len(req) {
			return q, nil, false
		}
		l := int(req[off])
		if l == 0 {
			off++
			break
		}
		// Compression pointers and the reserved label types are above 63;
		// a question has no earlier name to point at anyway.
		if l > 63 || off+1+l > len(req) || off+1+l-12 >= fastMaxName {
			return q, nil, false
		}
		for _, c := range req[off+1 : off+1+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				// Bytes the text form escapes: never in our names.
				return q, nil, false
			}
			lower[n] = c
			n++
		}
		lower[n] = '.'
		n++
		off += 1 + l
	}
	if n == 0 || off+4 > len(req) {
		// The root is not ours; it is forwarded.
		return q, nil, false
	}
	q.qname = req[12:off]
	q.qtype = binary.BigEndian.Uint16(req[off:])
	if binary.BigEndian.Uint16(req[off+2:]) != dns.ClassINET {
		return q, nil, false
	}
	off += 4
	q.question = req[12:off]
	q.size = dns.MinMsgSize
	if ar == 1 {
		// OPT: root name, type, payload size, extended rcode, version,
		// flags, no options.
		opt := req[off:]
		if len(opt) != 11 || opt[0] != 0 || binary.BigEndian.Uint16(opt[1:]) != dns.TypeOPT ||
			opt[6] != 0 || binary.BigEndian.Uint16(opt[9:]) != 0 {
			return q, nil, false
		}
		q.edns = true
		if size := int(binary.BigEndian.Uint16(opt[3:])); size > q.size {
			q.size = size
		}
		off += 11
	}
	if off != len(req) {
		return q, nil, false
	}
	return q, lower[:n], true
}

// fastReply is what the fast path answered, for Observe.
type fastReply struct {
	qtype uint16
	kind  string
}

// answerFast writes the reply to req into out (which it may grow) and
// returns it, or ok false when the query is for the generic path. recurse
// says whether the client may have names outside the zone forwarded; it
// is asked only when it matters.
func (s *Server) answerFast(ix *index, req []byte, out []byte, recurse func() bool) (resp []byte, r fastReply, ok bool) {
	var lower [fastMaxName + 1]byte
	q, name, ok := parseFast(req, &lower)
	if !ok {
		return nil, r, false
	}
	rel, ours := s.classifyFast(name, ix)
	if !ours {
		return nil, r, false
	}
	var rrs []byte // packed records for the answer, rrLen bytes each
	rrLen := 0
	e := ix.names[string(rel)]
	if e != nil {
		switch q.qtype {
		case dns.TypeA:
			rrs, rrLen = e.wireA, 16
		case dns.TypeAAAA:
			rrs, rrLen = e.wireAAAA, 28
		case dns.TypeSRV, dns.TypeANY:
			// Records of varying length and compression: generic path.
			return nil, r, false
		}
	}

	flags := uint16(hdrQR|hdrAA) | q.bits
	if len(s.upstreams) > 0 && recurse() {
		flags |= hdrRA
	}
	optLen := 0
	if q.edns {
		optLen = 11
	}
	out = append(out[:0], make([]byte, 12)...)
	binary.BigEndian.PutUint16(out[0:], q.id)
	binary.BigEndian.PutUint16(out[4:], 1)
	out = append(out, q.question...)

	switch {
	case len(rrs) > 0:
		// As Msg.Truncate does: as many records as fit beside the OPT.
		n := len(rrs) / rrLen
		k := n
		if room := q.size - optLen - len(out); room < n*rrLen {
			k = max(room, 0) / rrLen
		}
		if k == 0 {
			return nil, r, false
		}
		if k < n {
			flags |= hdrTC
		}
		start := len(out)
		out = append(out, rrs...)
		shuffleRecords(out[start:], rrLen, k)
		out = out[:start+k*rrLen]
		binary.BigEndian.PutUint16(out[6:], uint16(k))
		r = fastReply{qtype: q.qtype, kind: "answer"}
	default:
		// NXDOMAIN, or NODATA for a name that exists: the SOA alone.
		r = fastReply{qtype: q.qtype, kind: "nodata"}
		if e == nil {
			flags |= dns.RcodeNameError
			r.kind = "nxdomain"
		}
		var names wireNames
		if !names.addQuestion(q.qname) {
			return nil, r, false
		}
		if out, ok = s.appendSOA(out, ix, &names); !ok || len(out)+optLen > q.size {
			return nil, r, false
		}
		binary.BigEndian.PutUint16(out[8:], 1)
	}
	if q.edns {
		// Root name, type, our payload size, no extended rcode, version 0,
		// no flags, no options: what fit's SetEdns0 packs to.
		out = append(out, 0, byte(dns.TypeOPT>>8), byte(dns.TypeOPT), ednsSize>>8, ednsSize&0xff, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint16(out[10:], 1)
	}
	binary.BigEndian.PutUint16(out[2:], flags)
	return out, r, true
}

// classifyFast is classify for a name the fast path has read: lower case,
// fully qualified, host-name bytes only. The apex and the server's own name
// are left to the generic path.
func (s *Server) classifyFast(name []byte, ix *index) (rel []byte, ours bool) {
	zone := s.zone
	switch {
	case string(name) == zone:
		return nil, false
	case len(name) > len(zone) && string(name[len(name)-len(zone):]) == zone && name[len(name)-len(zone)-1] == '.':
		rel = name[:len(name)-len(zone)-1]
	default:
		bare := name[:len(name)-1]
		if i := bytes.IndexByte(bare, '.'); i >= 0 {
			if string(bare[:i]) != "tasks" || bytes.IndexByte(bare[i+1:], '.') >= 0 {
				return nil, false
			}
		} else if _, ok := ix.names[string(bare)]; !ok {
			return nil, false
		}
		rel = bare
	}
	if string(rel) == nsLabel {
		return nil, false
	}
	return rel, true
}

// shuffleRecords puts k of the records (each size bytes) of b, chosen at
// random, first and in random order, as the generic path's shuffle followed
// by its truncation does.
func shuffleRecords(b []byte, size, k int) {
	n := len(b) / size
	var tmp [28]byte
	for i := 0; i < k && i < n-1; i++ {
		j := i + rand.IntN(n-i)
		if j == i {
			continue
		}
		a, c := b[i*size:(i+1)*size], b[j*size:(j+1)*size]
		copy(tmp[:size], a)
		copy(a, c)
		copy(c, tmp[:size])
	}
}

// appendSOA appends the zone's SOA record, compressed as the generic packer
// would compress it after the question.
func (s *Server) appendSOA(out []byte, ix *index, names *wireNames) ([]byte, bool) {
	var ok bool
	if out, ok = names.appendName(out, s.wire.zone); !ok {
		return out, false
	}
	out = binary.BigEndian.AppendUint16(out, dns.TypeSOA)
	out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
	out = binary.BigEndian.AppendUint32(out, s.cfg.TTL)
	lenAt := len(out)
	out = append(out, 0, 0)
	if out, ok = names.appendName(out, s.wire.mname); !ok {
		return out, false
	}
	if out, ok = names.appendName(out, s.wire.mbox); !ok {
		return out, false
	}
	out = binary.BigEndian.AppendUint32(out, ix.serial)
	out = binary.BigEndian.AppendUint32(out, 3600)  // refresh, as soa()
	out = binary.BigEndian.AppendUint32(out, 600)   // retry
	out = binary.BigEndian.AppendUint32(out, 86400) // expire
	out = binary.BigEndian.AppendUint32(out, s.cfg.TTL)
	binary.BigEndian.PutUint16(out[lenAt:], uint16(len(out)-lenAt-2))
	return out, true
}

// soaNames are the wire forms of the names in the zone's SOA record.
type soaNames struct {
	zone, mname, mbox []byte
}

func newSOANames(zone string) soaNames {
	pack := func(name string) []byte {
		b := make([]byte, 256)
		n, err := dns.PackDomainName(name, b, 0, nil, false)
		if err != nil {
			return nil // an invalid zone: Start refuses to serve
		}
		return b[:n]
	}
	return soaNames{zone: pack(zone), mname: pack(nsLabel + "." + zone), mbox: pack("hostmaster." + zone)}
}

// wireNames is the compression table of a reply being written, kept as the
// miekg packer keeps its own so that the bytes come out the same: every
// suffix of every name written, from each label on, matched by exact bytes
// (so case counts), the first place a suffix was written winning.
type wireNames struct {
	n   int
	suf [24]struct {
		name []byte // wire form, to the root label
		off  int
	}
}

// maxPointer is the largest offset a compression pointer can hold.
const maxPointer = 1<<14 - 1

func (w *wireNames) find(name []byte) (int, bool) {
	for i := range w.n {
		if bytes.Equal(w.suf[i].name, name) {
			return w.suf[i].off, true
		}
	}
	return 0, false
}

func (w *wireNames) add(name []byte, off int) bool {
	if off > maxPointer {
		return true // the packer does not remember it either
	}
	if w.n == len(w.suf) {
		return false
	}
	w.suf[w.n].name, w.suf[w.n].off = name, off
	w.n++
	return true
}

// addQuestion enters the question's name, written at offset 12.
func (w *wireNames) addQuestion(qname []byte) bool {
	for i := 0; qname[i] != 0; i += 1 + int(qname[i]) {
		if _, dup := w.find(qname[i:]); !dup && !w.add(qname[i:], 12+i) {
			return false
		}
	}
	return true
}

// appendName appends name (wire form), ending it with a pointer to the
// longest suffix already written, and enters its new suffixes. ok is false
// when the table is full and the bytes could differ from the packer's.
func (w *wireNames) appendName(out, name []byte) ([]byte, bool) {
	for i := 0; name[i] != 0; i += 1 + int(name[i]) {
		if p, found := w.find(name[i:]); found {
			return append(out, byte(0xC0|p>>8), byte(p)), true
		}
		if !w.add(name[i:], len(out)) {
			return out, false
		}
		out = append(out, name[i:i+1+int(name[i])]...)
	}
	return append(out, 0), true
}
