package pki

import (
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// Join token: SWLT-1-<CA digest>-<secret>. The digest is SHA-256 of the anchor root's
// DER in base 36 (50 characters, as Swarm's), so a joining node can tell the real
// cluster from an impostor before it sends the secret; the secret (25 base-36
// characters, 129 bits) is what the manager checks.
const (
	tokenPrefix   = "SWLT"
	tokenVersion  = "1"
	digestLen     = 50
	secretLen     = 25
	secretHashLen = 64
)

var (
	// ErrMalformedToken: the string is not a join token (the message says which part).
	ErrMalformedToken = errors.New("malformed join token")
	// ErrCAMismatch: the cluster shown is not the one the token names; stop, send nothing.
	ErrCAMismatch = errors.New("the manager's CA does not match the join token's digest")
)

var secretSpace = new(big.Int).Exp(big.NewInt(36), big.NewInt(secretLen), nil)

// Token is a parsed join token.
type Token struct {
	CADigest string
	Secret   string
}

// String is the token as an operator copies it.
func (t Token) String() string {
	return tokenPrefix + "-" + tokenVersion + "-" + t.CADigest + "-" + t.Secret
}

// NewToken joins root's digest and a secret.
func NewToken(root *x509.Certificate, secret string) Token {
	return Token{CADigest: RootDigest(root), Secret: secret}
}

// RootDigest is SHA-256 of the certificate's DER in base 36, zero-padded to 50.
func RootDigest(root *x509.Certificate) string {
	sum := sha256.Sum256(root.Raw)
	return pad(new(big.Int).SetBytes(sum[:]).Text(36), digestLen)
}

// NewSecret draws a fresh secret.
func NewSecret() (string, error) {
	n, err := rand.Int(rand.Reader, secretSpace)
	if err != nil {
		return "", fmt.Errorf("join token secret: %w", err)
	}
	return pad(n.Text(36), secretLen), nil
}

// DeriveSecret computes the secret of role's join token at generation from the CA
// key, so the FSM needs to hold only the generation and HashSecret of the result,
// and any manager holding the CA key can print the token again (swarmlet
// join-token). Whoever can read the CA key can mint certificates outright, so
// deriving from it exposes nothing more. Rotating a token is generation+1.
func DeriveSecret(caKey *ecdsa.PrivateKey, role api.NodeRole, generation uint64) (string, error) {
	raw, err := caKey.Bytes()
	if err != nil {
		return "", fmt.Errorf("join token secret: %w", err)
	}
	info := "swarmlet join token v1|" + string(role) + "|" + strconv.FormatUint(generation, 10)
	k, err := hkdf.Key(sha256.New, raw, nil, info, 32)
	if err != nil {
		return "", fmt.Errorf("join token secret: %w", err)
	}
	n := new(big.Int).SetBytes(k)
	return pad(n.Mod(n, secretSpace).Text(36), secretLen), nil
}

// ParseToken reads a join token. Errors never repeat the input: it holds a secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: want SWLT-1-<ca digest>-<secret>, got %d dash-separated parts", ErrMalformedToken, len(parts))
	}
	if parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: it does not start with %s-", ErrMalformedToken, tokenPrefix)
	}
	if parts[1] != tokenVersion {
		return Token{}, fmt.Errorf("%w: version %.8q is not supported (this build reads version %s)", ErrMalformedToken, parts[1], tokenVersion)
	}
	if err := checkBase36("CA digest", parts[2], digestLen); err != nil {
		return Token{}, err
	}
	if err := checkBase36("secret", parts[3], secretLen); err != nil {
		return Token{}, err
	}
	return Token{CADigest: parts[2], Secret: parts[3]}, nil
}

func checkBase36(what, s string, n int) error {
	if len(s) != n {
		return fmt.Errorf("%w: the %s is %d characters long, want %d", ErrMalformedToken, what, len(s), n)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return fmt.Errorf("%w: the %s holds a character other than 0-9 and a-z", ErrMalformedToken, what)
		}
	}
	return nil
}

// PinRoot finds, among certificates a manager presented (its handshake chain, or a
// fetched CA bundle), the self-signed root whose digest the token names. Only that
// root is trusted until a connection verified against it hands over the full bundle.
func (t Token) PinRoot(certs []*x509.Certificate) (*x509.Certificate, error) {
	for _, c := range certs {
		if subtle.ConstantTimeCompare([]byte(RootDigest(c)), []byte(t.CADigest)) == 1 {
			if err := checkRoot(c); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrCAMismatch, err)
			}
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: the manager may belong to another cluster, or the token is stale after a CA rotation", ErrCAMismatch)
}

// JoinClientConfig is what a node without a certificate dials a manager with: the
// handshake completes only if the manager's chain ends at the root the token pins and
// proves a manager of that root's cluster, so the caller sends the token only over a
// connection that passed this check.
func JoinClientConfig(t Token) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verified in VerifyConnection against the pinned root; there is no pool yet.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			root, err := t.PinRoot(cs.PeerCertificates)
			if err != nil {
				return err
			}
			v := NewVerifier(clusterOf(root), &TrustBundle{Roots: []*x509.Certificate{root}}, nil)
			id, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return requireRole(id, []api.NodeRole{api.RoleManager})
		},
	}
}

// HashSecret is what the FSM stores for a token secret: no plaintext secret lands in
// raft.db or a snapshot. The secret has 129 random bits, so a fast hash suffices
// (there is nothing to brute-force); a password hash would buy nothing.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte("swarmlet join secret v1\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// MatchesHash compares the token's secret with a stored HashSecret in constant time.
func (t Token) MatchesHash(stored string) bool {
	if len(stored) != secretHashLen {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(HashSecret(t.Secret)), []byte(stored)) == 1
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat("0", n-len(s)) + s
}
