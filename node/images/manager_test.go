package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// cluster is a few nodes with an image manager each, their stores in memory,
// their peers each other's managers.
type cluster struct {
	stores   map[string]*fakeStore
	managers map[string]*Manager
	as       *api.Assignments // what every node's session says
}

func newTestCluster(t *testing.T, n int, tune func(*Config)) *cluster {
	c := &cluster{stores: map[string]*fakeStore{}, managers: map[string]*Manager{}, as: &api.Assignments{}}
	byAddr := map[string]*Manager{}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		node := api.Node{ID: id, Hostname: "host" + strconv.Itoa(i), Addr: fmt.Sprintf("127.67.9.%d", i), APIPort: 24240, Status: api.NodeReady}
		c.as.Nodes = append(c.as.Nodes, node)
		cfg := Config{NodeID: id, Store: newFakeStore(), DataDir: t.TempDir(), Backoff: time.Millisecond,
			Peer:        func(addr string) Peer { return peerNode{byAddr[addr]} },
			Assignments: func() *api.Assignments { return c.as }}
		if tune != nil {
			tune(&cfg)
		}
		m := New(cfg)
		t.Cleanup(m.Close)
		c.stores[id], c.managers[id] = cfg.Store.(*fakeStore), m
		byAddr[net.JoinHostPort(node.Addr, "24240")] = m
	}
	return c
}

func taskFor(image, digest, id string) *api.Task {
	return &api.Task{ID: "t1", ServiceID: "svc", Spec: api.ServiceSpec{Image: image, ImageDigest: digest, ImageID: id}}
}

type said struct {
	mu   sync.Mutex
	msgs []string
}

func (s *said) add(m string) { s.mu.Lock(); s.msgs = append(s.msgs, m); s.mu.Unlock() }
func (s *said) all() string  { s.mu.Lock(); defer s.mu.Unlock(); return strings.Join(s.msgs, "\n") }

func TestPrepare(t *testing.T) {
	imgID, img := archive([]string{"base", "app v1"}, false, false)
	const ref = "127.67.0.1:5000/app:v1"
	for _, tc := range []struct {
		name  string
		setup func(c *cluster)
		task  *api.Task
		err   string // "" when n1 ends up holding imgID
		// rejected: the error says the task can never start here.
		rejected bool
		check    func(t *testing.T, c *cluster, progress string)
	}{
		{name: "already here: nothing pulled", task: taskFor(ref, "", ""),
			setup: func(c *cluster) { c.stores["n1"].add(ref, img) },
			check: func(t *testing.T, c *cluster, _ string) {
				if c.stores["n1"].pulls != 0 {
					t.Fatal("pulled an image it had")
				}
			}},
		{name: "pulled, with progress", task: taskFor(ref, digestOf([]byte("manifest")), imgID),
			setup: func(c *cluster) {
				c.stores["n1"].pull = func(_ string, ev func(engine.PullEvent)) (string, []byte, error) {
					ev(engine.PullEvent{Layer: "l1", Status: "Downloading", Current: 500_000, Total: 2_000_000})
					time.Sleep(300 * time.Millisecond)
					ev(engine.PullEvent{Layer: "l1", Status: "Downloading", Current: 1_500_000, Total: 2_000_000})
					return imgID, img, nil
				}
			},
			check: func(t *testing.T, c *cluster, progress string) {
				if !strings.Contains(progress, "pulling "+ref+" ("+short(digestOf([]byte("manifest")))+"): 1.5MB/2MB, 0/1 layers") {
					t.Fatalf("progress %q", progress)
				}
			}},
		{name: "transient registry errors retried", task: taskFor(ref, "", ""),
			setup: func(c *cluster) {
				n := 0
				c.stores["n1"].pull = func(string, func(engine.PullEvent)) (string, []byte, error) {
					if n++; n < 3 {
						return "", nil, errors.New("received unexpected HTTP status: 503 Service Unavailable")
					}
					return imgID, img, nil
				}
			},
			check: func(t *testing.T, c *cluster, progress string) {
				if c.stores["n1"].pulls != 3 || !strings.Contains(progress, "retry 2/3") {
					t.Fatalf("%d pulls; progress %q", c.stores["n1"].pulls, progress)
				}
			}},
		{name: "missing tag rejected in the registry's words", task: taskFor(ref, "", ""), rejected: true,
			err: "no such image: registry 127.67.0.1:5000 has no " + ref + ": manifest for " + ref + " not found",
			setup: func(c *cluster) {
				c.stores["n1"].pull = func(string, func(engine.PullEvent)) (string, []byte, error) {
					return "", nil, errors.New("manifest for " + ref + " not found: manifest unknown: manifest unknown")
				}
			},
			check: func(t *testing.T, c *cluster, _ string) {
				if c.stores["n1"].pulls != 1 {
					t.Fatalf("a refusal was retried: %d pulls", c.stores["n1"].pulls)
				}
			}},
		{name: "refused credentials rejected with the way out", task: taskFor(ref, "", ""), rejected: true,
			err: "registry 127.67.0.1:5000 refused access to " + ref + ": Head \"http://127.67.0.1:5000/v2/app/manifests/v1\": no basic auth credentials (if it needs a login: docker login 127.67.0.1:5000, then create or update the service with --with-registry-auth)",
			setup: func(c *cluster) {
				c.stores["n1"].pull = func(string, func(engine.PullEvent)) (string, []byte, error) {
					return "", nil, errors.New(`Head "http://127.67.0.1:5000/v2/app/manifests/v1": no basic auth credentials`)
				}
			}},
		{name: "no registry, no node: rejected", task: taskFor(ref, "", ""), rejected: true,
			err: "no such image: no registry answered for " + ref},
		{name: "no registry: fetched from the node that has it", task: taskFor(ref, "", ""),
			setup: func(c *cluster) { c.stores["n3"].add(ref, img) },
			check: func(t *testing.T, c *cluster, progress string) {
				if im, err := c.stores["n1"].InspectImage(context.Background(), ref); err != nil || im.ID != imgID {
					t.Fatalf("fetched image not tagged %s: %v", ref, err)
				}
				if !strings.Contains(progress, "fetching "+ref+" from node host3 (n3)") {
					t.Fatalf("progress %q", progress)
				}
			}},
		{name: "pinned to the nodes' image: no pull at all", task: taskFor("app:dev", "", imgID),
			setup: func(c *cluster) {
				c.stores["n2"].add("app:dev", img)
				c.as.ImageSources = map[string][]string{imgID: {"n2"}}
			},
			check: func(t *testing.T, c *cluster, _ string) {
				if c.stores["n1"].pulls != 0 {
					t.Fatal("pulled an image pinned to the bits nodes hold")
				}
			}},
		{name: "pinned, nobody holds it", task: taskFor("app:dev", "", imgID), rejected: true,
			err: "no such image: no node holds " + short(imgID)},
		{name: "corrupt transfer refused, retried from another node", task: taskFor("app:dev", "", imgID),
			setup: func(c *cluster) {
				c.stores["n2"].add("app:dev", img)
				c.stores["n3"].add("app:dev", img)
				c.managers["n2"].corrupt.Store(1)
				c.managers["n3"].corrupt.Store(1)
			},
			check: func(t *testing.T, c *cluster, progress string) {
				if !strings.Contains(progress, "refused") || c.stores["n1"].loads != 1 {
					t.Fatalf("%d loads; progress %q", c.stores["n1"].loads, progress)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3, nil)
			if tc.setup != nil {
				tc.setup(c)
			}
			var s said
			id, err := c.managers["n1"].Prepare(context.Background(), tc.task, s.add)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error %q, got %v", tc.err, err)
				}
				if got := errors.Is(err, engine.ErrRejected); got != tc.rejected {
					t.Fatalf("rejected %v, want %v: %v", got, tc.rejected, err)
				}
			} else if err != nil || id != imgID || !c.stores["n1"].has(imgID) {
				t.Fatalf("prepared %q, %v; holds it: %v\nprogress:\n%s", id, err, c.stores["n1"].has(imgID), s.all())
			}
			if tc.check != nil {
				tc.check(t, c, s.all())
			}
		})
	}
}

// Tasks that need one image share one preparation.
func TestPrepareShared(t *testing.T) {
	imgID, img := archive([]string{"base"}, false, false)
	c := newTestCluster(t, 1, nil)
	release := make(chan struct{})
	c.stores["n1"].pull = func(string, func(engine.PullEvent)) (string, []byte, error) {
		<-release
		return imgID, img, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.managers["n1"].Prepare(context.Background(), taskFor("r.example:5000/a:1", "", ""), func(string) {})
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let all five join (a negative check: no second pull starts)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := c.stores["n1"].pulls; n != 1 {
		t.Fatalf("%d pulls for 5 tasks of one image", n)
	}
}

// A node serves at most MaxUploads transfers at once; the next asker hears busy
// at once, and a closed transfer frees its slot.
func TestArchiveBoundsUploads(t *testing.T) {
	_, img := archive([]string{"base"}, false, false)
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxUploads = 2 })
	c.stores["n1"].add("a:1", img)
	m := c.managers["n1"]
	ctx := context.Background()
	var open []io.Closer
	for range 2 {
		rc, _, err := m.Archive(ctx, "a:1")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, rc)
	}
	if _, _, err := m.Archive(ctx, "a:1"); !errors.Is(err, api.ErrBusy) {
		t.Fatalf("third transfer: %v, want busy", err)
	}
	open[0].Close()
	rc, _, err := m.Archive(ctx, "a:1")
	if err != nil {
		t.Fatalf("after one closed: %v", err)
	}
	rc.Close()
	open[1].Close()
	if _, _, err := m.Archive(ctx, "nope:1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown image: %v", err)
	}
}

// A busy holder makes the asker wait and ask again, not give up.
func TestPrepareWaitsForBusyHolder(t *testing.T) {
	imgID, img := archive([]string{"base"}, false, false)
	c := newTestCluster(t, 2, func(cfg *Config) { cfg.MaxUploads = 1 })
	c.stores["n2"].add("app:dev", img)
	c.as.ImageSources = map[string][]string{imgID: {"n2"}}
	held, _, err := c.managers["n2"].Archive(context.Background(), imgID)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(300 * time.Millisecond); held.Close() }()
	var s said
	if _, err := c.managers["n1"].Prepare(context.Background(), taskFor("app:dev", "", imgID), s.add); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.all(), "busy") {
		t.Fatalf("progress %q", s.all())
	}
}

// Prune removes what this node fetched and nothing uses; never an image in use,
// never one it did not fetch.
func TestPrune(t *testing.T) {
	usedID, used := archive([]string{"used"}, false, false)
	idleID, idle := archive([]string{"idle"}, false, false)
	ownID, own := archive([]string{"built here"}, false, false)
	runID, run := archive([]string{"a container of another node"}, false, false)
	c := newTestCluster(t, 1, nil)
	st, m := c.stores["n1"], c.managers["n1"]
	for ref, a := range map[string][]byte{"r/used:1": used, "r/idle:1": idle, "r/run:1": run} {
		id := st.add(ref, a)
		if err := m.rec.add(id); err != nil {
			t.Fatal(err)
		}
	}
	st.add("mine:dev", own)
	st.inUse = []string{runID}
	c.as.Tasks = []*api.Task{{ID: "t", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPreparing},
		Spec: api.ServiceSpec{Image: "r/used:1", ImageID: usedID}}}
	rep, err := m.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 1 || rep.Removed[0].ID != idleID || rep.InUse != 2 {
		t.Fatalf("report %+v", rep)
	}
	for _, id := range []string{usedID, ownID, runID} {
		if !st.has(id) {
			t.Fatalf("pruned %s", short(id))
		}
	}
	if st.has(idleID) {
		t.Fatal("idle image kept")
	}
}
