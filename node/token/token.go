// Package token makes and parses join tokens and mints the random IDs and secrets
// a node proposes (IDs are chosen by the proposer, never inside Raft's Apply).
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// RandomID returns n random base32 characters, lower case.
func RandomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	return strings.ToLower(b32.EncodeToString(b))[:n]
}

// Token layout: SWLT-1-<cluster digest>-<secret>. The digest lets a node tell a
// token of another cluster from a wrong secret; the secret says the role.

// ClusterDigest is the token's middle part for a cluster.
func ClusterDigest(clusterID string) string {
	h := sha256.Sum256([]byte(clusterID))
	return hex.EncodeToString(h[:])[:20]
}

// Make builds a join token.
func Make(clusterID, secret string) string {
	return "SWLT-1-" + ClusterDigest(clusterID) + "-" + secret
}

// Parse splits a join token into its digest and secret.
func Parse(tok string) (digest, secret string, err error) {
	parts := strings.Split(tok, "-")
	if len(parts) != 4 || parts[0] != "SWLT" || parts[1] != "1" || parts[2] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("malformed join token: expected SWLT-1-<cluster>-<secret>")
	}
	return parts[2], parts[3], nil
}

// SecretEqual compares secrets in constant time.
func SecretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
