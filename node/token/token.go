// Package token mints the random IDs a node proposes (IDs are chosen by the
// proposer, never inside Raft's Apply). Join tokens are node/pki's.
package token

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// RandomID returns n random base32 characters, lower case.
func RandomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	return strings.ToLower(b32.EncodeToString(b))[:n]
}
