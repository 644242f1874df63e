package raftstore

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/hashicorp/raft"
)

// An entry's Data and Extensions are stored as logMagic | nonce (12) | AES-GCM
// ciphertext and tag, with the entry's index, term, type and which field it is as
// additional data: a sealed value moved to another index or field fails to open.
// Index, term, type and AppendedAt stay readable: raft and bolt need them and they
// say nothing about the cluster's contents.
var logMagic = []byte("SWE\x01")

const logOverhead = 4 + 12 + 16

// EncryptedLogStore seals each entry's payload on the way into the wrapped store
// (raft-boltdb) and opens it on the way out.
type EncryptedLogStore struct {
	inner raft.LogStore
	aead  cipher.AEAD
}

var _ raft.LogStore = (*EncryptedLogStore)(nil)

// NewEncryptedLogStore wraps inner with key.
func NewEncryptedLogStore(inner raft.LogStore, key DataKey) (*EncryptedLogStore, error) {
	aead, err := key.subkey(nil, "swarmlet raft log v1")
	if err != nil {
		return nil, err
	}
	return &EncryptedLogStore{inner: inner, aead: aead}, nil
}

func (s *EncryptedLogStore) FirstIndex() (uint64, error) { return s.inner.FirstIndex() }
func (s *EncryptedLogStore) LastIndex() (uint64, error)  { return s.inner.LastIndex() }
func (s *EncryptedLogStore) DeleteRange(min, max uint64) error {
	return s.inner.DeleteRange(min, max)
}

// GetLog reads and opens one entry.
func (s *EncryptedLogStore) GetLog(index uint64, log *raft.Log) error {
	if err := s.inner.GetLog(index, log); err != nil {
		return err
	}
	data, err := s.open(log, 'd', log.Data)
	if err != nil {
		return err
	}
	ext := []byte(nil)
	if len(log.Extensions) > 0 {
		if ext, err = s.open(log, 'e', log.Extensions); err != nil {
			return err
		}
	}
	log.Data, log.Extensions = data, ext
	return nil
}

// StoreLog seals and stores one entry.
func (s *EncryptedLogStore) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs seals copies of the entries (raft keeps the originals in memory) and
// stores them in one batch.
func (s *EncryptedLogStore) StoreLogs(logs []*raft.Log) error {
	sealed := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		c := *l
		var err error
		if c.Data, err = s.seal(l, 'd', l.Data); err != nil {
			return err
		}
		if len(l.Extensions) > 0 {
			if c.Extensions, err = s.seal(l, 'e', l.Extensions); err != nil {
				return err
			}
		}
		sealed[i] = c
		ptrs[i] = &sealed[i]
	}
	return s.inner.StoreLogs(ptrs)
}

func logAAD(l *raft.Log, field byte) []byte {
	var b [18]byte
	binary.BigEndian.PutUint64(b[0:], l.Index)
	binary.BigEndian.PutUint64(b[8:], l.Term)
	b[16], b[17] = byte(l.Type), field
	return b[:]
}

func (s *EncryptedLogStore) seal(l *raft.Log, field byte, plain []byte) ([]byte, error) {
	out := make([]byte, len(logMagic)+12, logOverhead+len(plain))
	copy(out, logMagic)
	nonce := out[len(logMagic):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal raft entry %d: %w", l.Index, err)
	}
	return s.aead.Seal(out, nonce, plain, logAAD(l, field)), nil
}

func (s *EncryptedLogStore) open(l *raft.Log, field byte, sealed []byte) ([]byte, error) {
	if len(sealed) < logOverhead || !bytes.HasPrefix(sealed, logMagic) {
		return nil, fmt.Errorf("raft log entry %d: %w", l.Index, ErrNotEncrypted)
	}
	nonce := sealed[len(logMagic) : len(logMagic)+12]
	plain, err := s.aead.Open(nil, nonce, sealed[len(logMagic)+12:], logAAD(l, field))
	if err != nil {
		return nil, fmt.Errorf("raft log entry %d: %w", l.Index, ErrCorrupt)
	}
	if len(plain) == 0 {
		return nil, nil
	}
	return plain, nil
}
