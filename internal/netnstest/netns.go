// Package netnstest gives tests anonymous network namespaces to program
// netfilter, routes and devices in, without touching the host's.
//
// A namespace is made by unshare(CLONE_NEWNET) on a locked OS thread and held
// only by the file descriptor kept here; it is never bind-mounted, so it
// vanishes when the fd is closed (t.Cleanup) and also when the test process
// dies in any way, with every device, route and rule in it: nothing can leak
// into the host.
//
// Go code runs "in" it through Do: a goroutine locks its OS thread, switches
// that thread into the namespace, runs f, and switches back. A socket belongs
// to the namespace it was created in, for life, and so does a process started
// from that thread: servers are created inside Do and then served from
// ordinary goroutines; clients dial inside Do. Code that opens netlink sockets
// itself (the nftables balancer, cnet) takes the namespace's fd instead.
package netnstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NS is one test namespace.
type NS struct {
	h netns.NsHandle
}

// RequireRoot skips a test that cannot create namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create network namespaces")
	}
}

// New makes a namespace with its loopback up, removed when the test ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.New() // unshare: this thread is now in the new namespace
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: fmt.Errorf("new netns: %w", err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: Go discards it when this goroutine ends.
			ch <- res{err: fmt.Errorf("back to original netns: %w", err)}
			h.Close()
			return
		}
		runtime.UnlockOSThread()
		ch <- res{h: h}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("create test netns: %v", r.err)
	}
	n := &NS{h: r.h}
	t.Cleanup(func() { n.h.Close() })
	nl := n.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netns lo: %v", err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("netns lo up: %v", err)
	}
	return n
}

// Fd is the namespace's file descriptor, for code that opens its own sockets there.
func (n *NS) Fd() int { return int(n.h) }

// Handle is the namespace's handle.
func (n *NS) Handle() netns.NsHandle { return n.h }

// Netlink returns a netlink handle inside the namespace, closed when the test ends.
func (n *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.h)
	if err != nil {
		t.Fatalf("netlink handle in netns: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs f on an OS thread inside the namespace.
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		// Never run f anywhere but in the test namespace.
		if cur, err := netns.Get(); err != nil || !cur.Equal(n.h) || cur.Equal(orig) {
			errc <- errors.New("thread is not in the test netns")
			return // the thread stays locked and is discarded
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err))
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Sysctl writes /proc/sys/KEY in the namespace (the net sysctls an opener
// sees are its own thread's namespace's).
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	err := n.Do(func() error { return os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), 0o644) })
	if err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	var out []byte
	err := n.Do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun is Run for a command the test cannot go on without.
func (n *NS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is needed to inspect the test namespace: %v", name, err)
	}
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatalf("in netns: %v", err)
	}
	return out
}
