package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/memberlist"
)

// ErrMetaTooBig is returned when the encoded metadata does not fit in
// memberlist's node meta field (memberlist.MetaMaxSize bytes). memberlist
// panics on oversized meta, so it is checked before it ever reaches it.
var ErrMetaTooBig = errors.New("gossip: node meta too big")

// metaVersion prefixes the encoding so a later format can be told apart.
const metaVersion = 1

// encodeMeta encodes meta as a version byte followed by sorted
// (uvarint length, bytes) pairs: compact, deterministic (so an unchanged map
// never looks like an update to memberlist) and with no dependency beyond std.
func encodeMeta(meta map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	buf := []byte{metaVersion}
	for _, k := range keys {
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		v := meta[k]
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	if len(buf) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrMetaTooBig, len(buf), memberlist.MetaMaxSize)
	}
	return buf, nil
}

// decodeMeta is the inverse of encodeMeta. Empty input decodes to an empty
// map, so a member that sent no meta still has a usable Meta.
func decodeMeta(b []byte) (map[string]string, error) {
	meta := map[string]string{}
	if len(b) == 0 {
		return meta, nil
	}
	if b[0] != metaVersion {
		return nil, fmt.Errorf("gossip: unknown meta version %d", b[0])
	}
	b = b[1:]
	next := func() (string, error) {
		n, sz := binary.Uvarint(b)
		if sz <= 0 || n > uint64(len(b)-sz) {
			return "", errors.New("gossip: truncated meta")
		}
		s := string(b[sz : sz+int(n)])
		b = b[sz+int(n):]
		return s, nil
	}
	for len(b) > 0 {
		k, err := next()
		if err != nil {
			return nil, err
		}
		v, err := next()
		if err != nil {
			return nil, err
		}
		meta[k] = v
	}
	return meta, nil
}
