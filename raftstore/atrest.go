package raftstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Encryption at rest: every Raft log entry and snapshot is sealed with AES-256-GCM
// under a data key (DEK) that lives in the data dir only wrapped by a key-encryption
// key (atrest_keyfile.go). Why and what it guards against: node/pki/DESIGN.md,
// "Encryption at rest".

// Errors the daemon acts on or shows.
var (
	// ErrNotEncrypted: the data dir holds Raft data written without encryption at
	// rest (an older build); it cannot be read with a data key.
	ErrNotEncrypted = errors.New("raft data is not encrypted (written by a build without encryption at rest)")
	// ErrCorrupt: a sealed entry or snapshot frame failed authentication: the data
	// dir was modified, truncated, or belongs to another data key.
	ErrCorrupt = errors.New("raft data failed authentication (modified, truncated, or sealed with another key)")
)

// DataKey is the DEK: 32 random bytes.
type DataKey [32]byte

// NewDataKey draws a fresh DEK.
func NewDataKey() (DataKey, error) {
	var k DataKey
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("data key: %w", err)
	}
	return k, nil
}

// subkey derives a key for one purpose (log entries, one snapshot), so no two uses
// share a key and nonce space.
func (k DataKey) subkey(salt []byte, purpose string) (cipher.AEAD, error) {
	raw, err := hkdf.Key(sha256.New, k[:], salt, purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	return newGCM(raw)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
