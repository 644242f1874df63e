package raftstore

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileName holds the data dir's DEK, wrapped.
const KeyFileName = "raft-key.json"

var (
	// ErrNoKeyFile: the data dir has no key file (a new node, or data from a build
	// without encryption at rest).
	ErrNoKeyFile = errors.New("no raft data key file")
	// ErrLocked: autolock is on and the DEK needs the operator's unlock key.
	ErrLocked = errors.New("raft data is locked (autolock): run `swarmlet unlock` and give the cluster's unlock key")
	// ErrWrongUnlockKey: the key is well formed but does not open this data dir.
	ErrWrongUnlockKey = errors.New("the unlock key does not open this node's raft data: use the current key (`swarmlet unlock-key` on an unlocked manager prints it)")
	// ErrMalformedUnlockKey: the string is not an unlock key.
	ErrMalformedUnlockKey = errors.New("malformed unlock key: want SWLKEY-1-<50 characters 0-9a-z>")
)

// keyFile is the file's JSON. Without autolock the KEK is stored beside the wrapped
// DEK (as Swarm does): the data dir alone then opens the data, and encryption guards
// copies of raft.db and snapshots, not the whole dir. With autolock the KEK is
// derived from the unlock key and never written.
type keyFile struct {
	Version    int    `json:"version"`
	Autolock   bool   `json:"autolock"`
	KEK        []byte `json:"kek,omitempty"`
	Salt       []byte `json:"salt"`
	WrappedDEK []byte `json:"wrapped_dek"`
}

// KeyFile is a data dir's key file; after Unlock (or DataKey) it also holds the DEK
// in memory, so RotateUnlockKey can wrap it again.
type KeyFile struct {
	path string
	f    keyFile
	dek  *DataKey
}

// CreateKeyFile makes a fresh DEK for a new data dir and writes it wrapped. An empty
// unlockKey means no autolock.
func CreateKeyFile(dir, unlockKey string) (*KeyFile, DataKey, error) {
	path := filepath.Join(dir, KeyFileName)
	if _, err := os.Stat(path); err == nil {
		return nil, DataKey{}, fmt.Errorf("create %s: it exists; refusing to replace the key to existing data", path)
	}
	dek, err := NewDataKey()
	if err != nil {
		return nil, DataKey{}, err
	}
	k := &KeyFile{path: path, dek: &dek}
	if err := k.wrap(unlockKey); err != nil {
		return nil, DataKey{}, err
	}
	return k, dek, nil
}

// LoadKeyFile reads dir's key file.
func LoadKeyFile(dir string) (*KeyFile, error) {
	path := filepath.Join(dir, KeyFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read raft key file: %w", err)
	}
	k := &KeyFile{path: path}
	if err := json.Unmarshal(b, &k.f); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if k.f.Version != 1 {
		return nil, fmt.Errorf("%s: version %d is not supported by this build", path, k.f.Version)
	}
	if k.f.Autolock == (len(k.f.KEK) != 0) {
		return nil, fmt.Errorf("%s: autolock=%v but the KEK is %s", path, k.f.Autolock,
			map[bool]string{true: "present", false: "missing"}[len(k.f.KEK) != 0])
	}
	return k, nil
}

// Autolock reports whether opening the data needs the unlock key.
func (k *KeyFile) Autolock() bool { return k.f.Autolock }

// DataKey unwraps the DEK with the stored KEK; with autolock it returns ErrLocked.
func (k *KeyFile) DataKey() (DataKey, error) {
	if k.f.Autolock {
		return DataKey{}, ErrLocked
	}
	return k.unwrap(k.f.KEK, ErrCorrupt)
}

// Unlock unwraps the DEK with the operator's unlock key.
func (k *KeyFile) Unlock(unlockKey string) (DataKey, error) {
	if !k.f.Autolock {
		return k.DataKey()
	}
	raw, err := ParseUnlockKey(unlockKey)
	if err != nil {
		return DataKey{}, err
	}
	return k.unwrap(raw, ErrWrongUnlockKey)
}

// RotateUnlockKey wraps the DEK (already unlocked) with a new unlock key and replaces
// the file atomically; the old key stops working. An empty key turns autolock off.
func (k *KeyFile) RotateUnlockKey(newUnlockKey string) error {
	if k.dek == nil {
		return fmt.Errorf("rotate unlock key: %w", ErrLocked)
	}
	return k.wrap(newUnlockKey)
}

func (k *KeyFile) unwrap(secret []byte, wrong error) (DataKey, error) {
	aead, err := kek(secret, k.f.Salt)
	if err != nil {
		return DataKey{}, err
	}
	w := k.f.WrappedDEK
	if len(w) < aead.NonceSize() {
		return DataKey{}, fmt.Errorf("%s: %w", k.path, ErrCorrupt)
	}
	raw, err := aead.Open(nil, w[:aead.NonceSize()], w[aead.NonceSize():], wrapAAD(k.f.Autolock))
	if err != nil || len(raw) != len(DataKey{}) {
		return DataKey{}, wrong
	}
	var dek DataKey
	copy(dek[:], raw)
	k.dek = &dek
	return dek, nil
}

func (k *KeyFile) wrap(unlockKey string) error {
	f := keyFile{Version: 1, Salt: make([]byte, 32)}
	if _, err := rand.Read(f.Salt); err != nil {
		return fmt.Errorf("key file salt: %w", err)
	}
	var secret []byte
	if unlockKey == "" {
		f.KEK = make([]byte, 32)
		if _, err := rand.Read(f.KEK); err != nil {
			return fmt.Errorf("key-encryption key: %w", err)
		}
		secret = f.KEK
	} else {
		raw, err := ParseUnlockKey(unlockKey)
		if err != nil {
			return err
		}
		f.Autolock, secret = true, raw
	}
	aead, err := kek(secret, f.Salt)
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("wrap data key: %w", err)
	}
	f.WrappedDEK = aead.Seal(nonce, nonce, k.dek[:], wrapAAD(f.Autolock))
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(k.path, b, 0o600); err != nil {
		return fmt.Errorf("write raft key file: %w", err)
	}
	k.f = f
	return nil
}

// kek derives the key-encryption key. The unlock key is 256 random bits, not a
// password, so HKDF is enough; a slow password hash would buy nothing.
func kek(secret, salt []byte) (cipher.AEAD, error) {
	raw, err := hkdf.Key(sha256.New, secret, salt, "swarmlet raft kek v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive key-encryption key: %w", err)
	}
	return newGCM(raw)
}

// wrapAAD binds the autolock flag to the wrapped key: flipping it in the file makes
// the DEK fail to open instead of silently changing how it is guarded.
func wrapAAD(autolock bool) []byte {
	if autolock {
		return []byte("swarmlet dek v1 autolock")
	}
	return []byte("swarmlet dek v1")
}

// Unlock keys: SWLKEY-1-<32 random bytes in base 36, 50 characters>.
const (
	unlockPrefix = "SWLKEY-1-"
	unlockLen    = 50
)

// NewUnlockKey draws a fresh unlock key (init --autolock, unlock-key --rotate).
func NewUnlockKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("unlock key: %w", err)
	}
	s := new(big.Int).SetBytes(b).Text(36)
	return unlockPrefix + strings.Repeat("0", unlockLen-len(s)) + s, nil
}

// ParseUnlockKey returns the key's 32 bytes. Errors never repeat the input.
func ParseUnlockKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	body, ok := strings.CutPrefix(s, unlockPrefix)
	if !ok || len(body) != unlockLen {
		return nil, ErrMalformedUnlockKey
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return nil, ErrMalformedUnlockKey
		}
	}
	n, ok := new(big.Int).SetString(body, 36)
	if !ok || n.BitLen() > 256 {
		return nil, ErrMalformedUnlockKey
	}
	return n.FillBytes(make([]byte, 32)), nil
}

// writeFileAtomic replaces path with data so a crash leaves the old or the new file,
// never a torn one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
