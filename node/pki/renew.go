package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Renewal happens at a random point of the certificate's lifetime between these
// fractions (Swarm's rule): late enough to be rare, early enough that a manager
// outage of a fifth of the lifetime costs nobody their certificate, spread so the
// nodes of a cluster do not all ask at once.
const (
	renewFrom = 0.5
	renewTo   = 0.8
)

// RenewAt is when to renew cert: NotBefore + lifetime x [0.5, 0.8), drawn from rnd.
func RenewAt(cert *x509.Certificate, rnd *rand.Rand) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	f := renewFrom + (renewTo-renewFrom)*rnd.Float64()
	return cert.NotBefore.Add(time.Duration(float64(life) * f))
}

// Clock is the time a Renewer waits on; tests pass a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RenewerConfig wires a Renewer.
type RenewerConfig struct {
	Holder *CertHolder
	// Renew obtains a new certificate: a new key and CSR, signed by a manager (or by
	// the local CA on the leader). The renewer only decides when.
	Renew  func(ctx context.Context) (*tls.Certificate, error)
	Clock  Clock      // nil: the real clock
	Rand   *rand.Rand // nil: randomly seeded
	Logger *slog.Logger
	// MaxBackoff caps the wait between failed attempts (0: one minute).
	MaxBackoff time.Duration
}

// Renewer keeps a node's certificate fresh: it sleeps until RenewAt of the current
// certificate, renews, stores the result in the holder (live connections keep the
// old one, new handshakes use the new one), and starts over.
type Renewer struct {
	cfg     RenewerConfig
	trigger chan struct{}
}

// NewRenewer fills in defaults.
func NewRenewer(cfg RenewerConfig) *Renewer {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Minute
	}
	return &Renewer{cfg: cfg, trigger: make(chan struct{}, 1)}
}

// RenewNow asks for a renewal without waiting for the schedule: after a role change
// (promote, demote) or when a CA rotation needs every node on the new root.
func (r *Renewer) RenewNow() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run renews until ctx ends.
func (r *Renewer) Run(ctx context.Context) error {
	c := r.cfg
	for {
		leaf := c.Holder.Leaf()
		at := RenewAt(leaf, c.Rand)
		c.Logger.Debug("certificate renewal scheduled", "at", at, "expires", leaf.NotAfter)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Clock.After(at.Sub(c.Clock.Now())):
		case <-r.trigger:
		}
		backoff := time.Second
		for {
			cert, err := c.Renew(ctx)
			if err == nil {
				err = withLeaf(cert)
			}
			if err == nil {
				c.Holder.Store(cert)
				c.Logger.Info("certificate renewed", "expires", cert.Leaf.NotAfter)
				break
			}
			c.Logger.Warn("certificate renewal failed; retrying", "err", err, "retry_in", backoff, "expires", leaf.NotAfter)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.Clock.After(backoff):
			case <-r.trigger:
			}
			backoff = min(2*backoff, c.MaxBackoff)
		}
	}
}

// withLeaf parses the leaf if the renew function left it out: the schedule needs it.
func withLeaf(c *tls.Certificate) error {
	if c == nil || len(c.Certificate) == 0 {
		return errors.New("renewal returned no certificate")
	}
	if c.Leaf != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	c.Leaf = leaf
	return nil
}
