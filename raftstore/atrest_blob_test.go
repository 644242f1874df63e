package raftstore

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealBlob(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	secret := []byte("-----BEGIN PRIVATE KEY----- not really")
	sealed, err := k.SealBlob("node key", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret[:10]) {
		t.Fatal("plaintext in the sealed blob")
	}
	if got, err := k.OpenBlob("node key", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q %v", got, err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		k       DataKey
		purpose string
		b       []byte
		want    error
	}{
		"another key":     {other, "node key", sealed, ErrCorrupt},
		"another purpose": {k, "gossip keys", sealed, ErrCorrupt},
		"flipped bit":     {k, "node key", flipped, ErrCorrupt},
		"plaintext":       {k, "node key", secret, ErrNotEncrypted},
		"truncated":       {k, "node key", sealed[:10], ErrNotEncrypted},
	} {
		if _, err := tc.k.OpenBlob(tc.purpose, tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
