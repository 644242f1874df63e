package raftstore

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// A sealed snapshot is snapMagic | salt (32) | frames. Each frame seals snapFrame
// bytes of the stream (the last one 0..snapFrame bytes) with a key derived from the
// DEK and the salt, under the nonce counter (11 bytes) | final flag (1 byte), with
// the snapshot's ID as additional data. The counter catches reordered or dropped
// frames, the flag a stream cut at a frame boundary, the ID a snapshot swapped for
// another. A fresh salt per snapshot gives each one its own key, so a counter nonce
// never repeats under a key.
var snapMagic = []byte("SWLSNAP\x01")

const (
	snapFrame  = 64 << 10
	snapTag    = 16
	snapHeader = 8 + 32
)

// EncryptedSnapshotStore seals snapshots written to the wrapped store (raft's file
// snapshot store) and opens them on read.
type EncryptedSnapshotStore struct {
	inner raft.SnapshotStore
	key   DataKey
}

var _ raft.SnapshotStore = (*EncryptedSnapshotStore)(nil)

// NewEncryptedSnapshotStore wraps inner with key.
func NewEncryptedSnapshotStore(inner raft.SnapshotStore, key DataKey) *EncryptedSnapshotStore {
	return &EncryptedSnapshotStore{inner: inner, key: key}
}

// Create starts a sealed snapshot.
func (s *EncryptedSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64,
	configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.inner.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	header := make([]byte, snapHeader)
	copy(header, snapMagic)
	salt := header[len(snapMagic):]
	fail := func(err error) (raft.SnapshotSink, error) {
		_ = sink.Cancel()
		return nil, fmt.Errorf("create sealed snapshot: %w", err)
	}
	if _, err := rand.Read(salt); err != nil {
		return fail(err)
	}
	aead, err := s.key.subkey(salt, "swarmlet raft snapshot v1")
	if err != nil {
		return fail(err)
	}
	if _, err := sink.Write(header); err != nil {
		return fail(err)
	}
	return &sealingSink{SnapshotSink: sink, aead: aead, aad: []byte(sink.ID()),
		buf: make([]byte, 0, snapFrame), out: make([]byte, 0, snapFrame+snapTag)}, nil
}

// List reports the wrapped store's snapshots with the sizes of their plaintext.
func (s *EncryptedSnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.inner.List()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, len(metas))
	for i, m := range metas {
		c := *m
		c.Size = plainSize(m.Size)
		out[i] = &c
	}
	return out, nil
}

// Open returns a reader of the plaintext. The metadata's Size is the plaintext's:
// raft sends exactly Size bytes of the stream to a follower, whose own store seals
// them again under its own key.
func (s *EncryptedSnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.inner.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, snapFrame+snapTag+1)
	header := make([]byte, snapHeader)
	if _, err := io.ReadFull(br, header); err != nil || !bytes.HasPrefix(header, snapMagic) {
		rc.Close()
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, fmt.Errorf("open snapshot %s: %w", id, err)
		}
		return nil, nil, fmt.Errorf("snapshot %s: %w", id, ErrNotEncrypted)
	}
	aead, err := s.key.subkey(header[len(snapMagic):], "swarmlet raft snapshot v1")
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	c := *meta
	c.Size = plainSize(meta.Size)
	return &c, &openingReader{r: br, closer: rc, aead: aead, aad: []byte(id), id: id,
		frame: make([]byte, snapFrame+snapTag)}, nil
}

// plainSize inverts the framing: every frame but the last is full, and there is
// always a last one.
func plainSize(sealed int64) int64 {
	body := sealed - snapHeader
	if body < snapTag {
		return 0
	}
	frames := (body + snapFrame + snapTag - 1) / (snapFrame + snapTag)
	return body - frames*snapTag
}

func frameNonce(counter uint64, final bool) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[3:11], counter)
	if final {
		n[11] = 1
	}
	return n[:]
}

type sealingSink struct {
	raft.SnapshotSink
	aead    cipher.AEAD
	aad     []byte
	buf     []byte
	out     []byte
	counter uint64
	err     error
	closed  bool
}

// Write buffers up to a frame. A full frame is sealed only when more data arrives, so
// the frame Close seals is the final one even when the stream ends on a boundary.
func (s *sealingSink) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	for len(p) > 0 {
		if len(s.buf) == snapFrame {
			if err := s.flush(false); err != nil {
				return 0, err
			}
		}
		k := copy(s.buf[len(s.buf):snapFrame], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
	}
	return n, nil
}

func (s *sealingSink) flush(final bool) error {
	s.out = s.aead.Seal(s.out[:0], frameNonce(s.counter, final), s.buf, s.aad)
	s.counter++
	s.buf = s.buf[:0]
	if _, err := s.SnapshotSink.Write(s.out); err != nil {
		s.err = err
		return err
	}
	return nil
}

// Close seals the final frame and closes the wrapped sink. A second Close does
// nothing, as with raft's own sinks: raft closes again after the FSM's Persist has.
func (s *sealingSink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.err == nil {
		s.err = s.flush(true)
	}
	if s.err != nil {
		_ = s.SnapshotSink.Cancel()
		return s.err
	}
	s.err = errors.New("snapshot sink closed")
	return s.SnapshotSink.Close()
}

type openingReader struct {
	r       *bufio.Reader
	closer  io.Closer
	aead    cipher.AEAD
	aad     []byte
	id      string
	frame   []byte
	plain   []byte
	counter uint64
	done    bool
	err     error
}

func (o *openingReader) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.done {
			return 0, io.EOF
		}
		o.err = o.next()
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}

// next opens one frame. It is the last one when nothing follows it; a frame that
// was not sealed as the last one then fails to open, which is how a stream cut at a
// frame boundary is caught.
func (o *openingReader) next() error {
	n, err := io.ReadFull(o.r, o.frame)
	final := false
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("snapshot %s: the final frame is missing: %w", o.id, ErrCorrupt)
	case errors.Is(err, io.ErrUnexpectedEOF):
		final = true
	case err != nil:
		return fmt.Errorf("read snapshot %s: %w", o.id, err)
	default:
		if _, perr := o.r.Peek(1); errors.Is(perr, io.EOF) {
			final = true
		} else if perr != nil {
			return fmt.Errorf("read snapshot %s: %w", o.id, perr)
		}
	}
	plain, err := o.aead.Open(o.frame[:0], frameNonce(o.counter, final), o.frame[:n], o.aad)
	if err != nil {
		return fmt.Errorf("snapshot %s frame %d: %w", o.id, o.counter, ErrCorrupt)
	}
	o.counter++
	o.plain, o.done = plain, final
	return nil
}

func (o *openingReader) Close() error { return o.closer.Close() }
