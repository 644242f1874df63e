package raftstore

import (
	"bytes"
	"crypto/rand"
	"fmt"
)

// Sealed blobs: small secrets a manager keeps outside Raft (its own TLS key, its
// copy of the gossip keyring) sealed under the same data key, so that autolock
// guards them as it guards the Raft data. blobMagic | nonce (12) | AES-GCM of the
// plaintext, with the purpose as additional data (a blob of one purpose does not
// open as another).
var blobMagic = []byte("SWB\x01")

// SealBlob seals plain for purpose under the data key.
func (k DataKey) SealBlob(purpose string, plain []byte) ([]byte, error) {
	aead, err := k.subkey(nil, "swarmlet blob v1")
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(blobMagic)+12, len(blobMagic)+12+len(plain)+16)
	copy(out, blobMagic)
	if _, err := rand.Read(out[len(blobMagic):]); err != nil {
		return nil, fmt.Errorf("seal %s: %w", purpose, err)
	}
	return aead.Seal(out, out[len(blobMagic):], plain, []byte(purpose)), nil
}

// OpenBlob opens what SealBlob sealed for purpose.
func (k DataKey) OpenBlob(purpose string, sealed []byte) ([]byte, error) {
	if len(sealed) < len(blobMagic)+12+16 || !bytes.HasPrefix(sealed, blobMagic) {
		return nil, fmt.Errorf("%s: %w", purpose, ErrNotEncrypted)
	}
	aead, err := k.subkey(nil, "swarmlet blob v1")
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, sealed[len(blobMagic):len(blobMagic)+12], sealed[len(blobMagic)+12:], []byte(purpose))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", purpose, ErrCorrupt)
	}
	return plain, nil
}
