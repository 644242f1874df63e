package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

func TestRenewAt(t *testing.T) {
	ca := mustCA(t, "c1")
	cases := []struct {
		name   string
		expiry time.Duration
	}{
		{"default 90 days", DefaultCertExpiry},
		{"minimum 1 hour", MinCertExpiry},
		{"one year", 365 * 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			leaf := node(t, ca, "n1", api.RoleWorker, func(r *NodeRequest) { r.Expiry = tc.expiry }).Leaf
			life := leaf.NotAfter.Sub(leaf.NotBefore)
			lo, hi := leaf.NotBefore.Add(life/2), leaf.NotBefore.Add(life*8/10)
			rnd := rand.New(rand.NewPCG(1, 2))
			first, last := hi, lo
			for range 2000 {
				at := RenewAt(leaf, rnd)
				if at.Before(lo) || !at.Before(hi) {
					t.Fatalf("renew at %s, outside [%s, %s)", at, lo, hi)
				}
				first, last = minTime(first, at), maxTime(last, at)
			}
			// Spread over the window, not bunched: nodes must not all ask at once.
			if first.Sub(lo) > life/50 || hi.Sub(last) > life/50 {
				t.Errorf("2000 draws span only [%s, %s] of [%s, %s)", first, last, lo, hi)
			}
		})
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fakeClock fires After channels only when Advance passes their deadline, and tells
// the test each time the code under test starts waiting.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	waiting chan time.Time // the deadline of each new wait
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, waiting: make(chan time.Time, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := fakeWaiter{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		w.ch <- c.now
	} else {
		c.waiters = append(c.waiters, w)
	}
	c.waiting <- w.at
	return w.ch
}

// Set moves the clock to t and fires every wait whose deadline has come.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// nextWait is the deadline of the next wait the renewer starts.
func (c *fakeClock) nextWait(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-c.waiting:
		return at
	case <-time.After(10 * time.Second):
		t.Fatal("the renewer did not start waiting")
		return time.Time{}
	}
}

func TestRenewer(t *testing.T) {
	ca := mustCA(t, "c1")
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := newFakeClock(start)
	issue := func() *tls.Certificate {
		return node(t, ca, "n1", api.RoleWorker, func(r *NodeRequest) { r.Now = clock.Now() })
	}
	holder := NewCertHolder(issue())
	var (
		mu    sync.Mutex
		calls int
		fail  = 1 // the second renewal fails once, then succeeds
	)
	renew := func(context.Context) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 2 && fail > 0 {
			fail--
			return nil, errors.New("no manager reachable")
		}
		return issue(), nil
	}
	r := NewRenewer(RenewerConfig{Holder: holder, Renew: renew, Clock: clock, Rand: rand.New(rand.NewPCG(7, 7))})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	})
	callCount := func() int { mu.Lock(); defer mu.Unlock(); return calls }
	inWindow := func(at time.Time) {
		t.Helper()
		leaf := holder.Leaf()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if at.Before(leaf.NotBefore.Add(life/2)) || !at.Before(leaf.NotBefore.Add(life*8/10)) {
			t.Fatalf("renewal scheduled at %.1f%% of the lifetime", 100*float64(at.Sub(leaf.NotBefore))/float64(life))
		}
	}

	// First certificate: the renewer waits for a point in [50%, 80%).
	first := holder.Leaf()
	at := clock.nextWait(t)
	inWindow(at)
	clock.Set(at.Add(-time.Nanosecond))
	if callCount() != 0 || holder.Leaf() != first {
		t.Fatal("renewed before the scheduled time")
	}
	clock.Set(at)
	// The renewer renewed and scheduled the next renewal for the new certificate.
	at2 := clock.nextWait(t)
	if callCount() != 1 || holder.Leaf() == first {
		t.Fatalf("after the scheduled time: %d renew calls, certificate replaced %v", callCount(), holder.Leaf() != first)
	}
	if !holder.Leaf().NotBefore.Equal(at.Add(-backdate).Truncate(time.Second)) {
		t.Errorf("renewed certificate issued at %s, want %s", holder.Leaf().NotBefore.Add(backdate), at)
	}
	inWindow(at2)

	// Second renewal fails: a retry after the first backoff, then success.
	second := holder.Leaf()
	clock.Set(at2)
	retry := clock.nextWait(t)
	if got := retry.Sub(at2); got != time.Second {
		t.Errorf("first retry after %s, want 1s", got)
	}
	if holder.Leaf() != second {
		t.Fatal("a failed renewal replaced the certificate")
	}
	clock.Set(retry)
	at3 := clock.nextWait(t)
	if callCount() != 3 || holder.Leaf() == second {
		t.Fatalf("after the retry: %d renew calls, certificate replaced %v", callCount(), holder.Leaf() != second)
	}
	inWindow(at3)

	// RenewNow (promotion, CA rotation) renews without waiting for the schedule.
	third := holder.Leaf()
	r.RenewNow()
	clock.nextWait(t)
	if callCount() != 4 || holder.Leaf() == third {
		t.Fatalf("after RenewNow: %d renew calls, certificate replaced %v", callCount(), holder.Leaf() != third)
	}
}
