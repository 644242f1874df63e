package lb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/internal/testlog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Network namespace tests.
//
// A testNS is an anonymous network namespace: created by unshare(CLONE_NEWNET)
// on a locked OS thread and referenced only by the file descriptor we keep. It
// is never bind-mounted, so it vanishes when the fd is closed (t.Cleanup) and
// also when the test process dies in any way: nothing can leak into the host.
//
// Go code runs "in" it through Do: a goroutine locks its OS thread, switches
// that thread into the namespace, runs f, and switches back. What matters is
// that a socket belongs to the namespace it was created in, for life: servers
// are created inside Do and then served from ordinary goroutines; clients dial
// inside Do. The nftables balancer gets the namespace fd in Config.NetNSFd and
// opens its netlink sockets there, so it never sees the host's ruleset.
type testNS struct {
	h netns.NsHandle
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create network namespaces")
	}
}

func newTestNS(t testing.TB) *testNS {
	t.Helper()
	requireRoot(t)
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
	n := &testNS{h: r.h}
	t.Cleanup(func() { n.h.Close() })
	nl := n.netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netns lo: %v", err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("netns lo up: %v", err)
	}
	return n
}

func (n *testNS) netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.h)
	if err != nil {
		t.Fatalf("netlink handle in netns: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs f on an OS thread inside the namespace.
func (n *testNS) Do(f func() error) error {
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
		// Belt and braces: never run f anywhere but in the test namespace.
		if cur, err := netns.Get(); err != nil || !cur.Equal(n.h) || cur.Equal(orig) {
			errc <- errors.New("thread is not in the test netns")
			return // thread stays locked and is discarded
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// run runs a command inside the namespace (a child forked from a thread in the
// namespace inherits it).
func (n *testNS) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is needed to inspect the test namespace: %v", name, err)
	}
	var out []byte
	err := n.Do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s %s in netns: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// idServer is a TCP backend that answers each connection with its name and
// records the peer address it saw.
type idServer struct {
	name string
	ln   net.Listener
	mu   sync.Mutex
	hits int
	peer string
}

func startIDServer(t testing.TB, name, addr string, listen func(string) (net.Listener, error)) *idServer {
	t.Helper()
	ln, err := listen(addr)
	if err != nil {
		t.Fatalf("backend %s listen %s: %v", name, addr, err)
	}
	s := &idServer{name: name, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.hits++
			s.peer = c.RemoteAddr().String()
			s.mu.Unlock()
			io.WriteString(c, name+"\n")
			c.Close()
		}
	}()
	return s
}

func (s *idServer) stats() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, s.peer
}

// askID dials addr and returns the name the backend answered with.
func askID(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// spread makes n connections to addr with dial (which must create the socket
// in the right namespace) and counts answers per backend name.
func spread(n int, dial func() (string, error)) (map[string]int, error) {
	got := map[string]int{}
	for range n {
		id, err := dial()
		if err != nil {
			return got, err
		}
		got[id]++
	}
	return got, nil
}

func testLogger(t testing.TB) *slog.Logger { return testlog.New(t) }
