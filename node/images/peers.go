package images

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Fetching an image from the nodes that hold it. Who holds what: the manager's
// session answer lists, for each pinned image ID this node needs, the nodes whose
// live tasks reported holding it (their status carries the image ID); a node that
// holds an image no task uses yet (just built, or loaded by hand) is found by
// asking every ready node (the first round, and whenever the list is empty).
// Which of them serves is random, and each serves at most MaxUploads at once, so
// a node that has just loaded the image soon serves others: the load fans out.

type source struct {
	node, host, addr string
}

func (s source) String() string { return fmt.Sprintf("node %s (%s)", s.host, s.node) }

// Per node: how many failed transfers before it is left out of this preparation.
const maxFailuresPerSource = 2

func (m *Manager) fromPeers(ctx context.Context, w want, say func(string)) (string, error) {
	ref := w.id
	if ref == "" {
		ref = w.ref
	}
	failures := map[string]int{}
	var lastErr error
	for round := 0; ; round++ {
		cands := m.candidates(ctx, w, ref, round == 0)
		busy, tried := 0, 0
		for _, c := range cands {
			if failures[c.node] >= maxFailuresPerSource {
				continue
			}
			tried++
			id, err := m.fetchFrom(ctx, c, w, ref, say)
			if err == nil {
				return id, nil
			}
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			switch {
			case errors.Is(err, api.ErrBusy):
				busy++
				continue
			case errors.Is(err, api.ErrNotFound):
				failures[c.node] = maxFailuresPerSource // no longer holds it
			default:
				failures[c.node]++
			}
			lastErr = err
			m.log.Warn("image transfer failed", "image", w.name, "from", c.node, "err", err)
			say(fmt.Sprintf("fetching %s from %s failed: %v; trying another node", w.name, c, err))
		}
		if tried == 0 {
			if lastErr != nil {
				return "", lastErr
			}
			return "", errNoHolder
		}
		wait := min(200*time.Millisecond<<min(round, 4), 2*time.Second)
		wait += time.Duration(rand.Int64N(int64(wait)/2 + 1))
		if busy > 0 {
			say(fmt.Sprintf("fetching %s: %d node(s) holding it are busy serving others; retrying in %s", w.name, busy, wait.Round(10*time.Millisecond)))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
}

// candidates are the nodes to fetch from, in random order: those the manager
// names, and, when asked to or when it names none, every ready node that answers
// that it holds the image.
func (m *Manager) candidates(ctx context.Context, w want, ref string, askAll bool) []source {
	as := m.cfg.Assignments()
	if as == nil {
		return nil
	}
	nodes := map[string]api.Node{}
	for _, n := range as.Nodes {
		if n.ID != m.cfg.NodeID && n.Status == api.NodeReady {
			nodes[n.ID] = n
		}
	}
	seen := map[string]bool{}
	var out []source
	add := func(n api.Node) {
		if !seen[n.ID] {
			seen[n.ID] = true
			out = append(out, source{node: n.ID, host: n.Hostname, addr: net.JoinHostPort(n.Addr, strconv.Itoa(n.APIPort))})
		}
	}
	if w.id != "" {
		for _, id := range as.ImageSources[w.id] {
			if n, ok := nodes[id]; ok {
				add(n)
			}
		}
	}
	if askAll || len(out) == 0 {
		for _, n := range m.ask(ctx, nodes, ref, w.id) {
			add(n)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// ask asks nodes in parallel (a few at a time, briefly each) whether they hold ref.
func (m *Manager) ask(ctx context.Context, nodes map[string]api.Node, ref, wantID string) []api.Node {
	var (
		mu  sync.Mutex
		out []api.Node
		wg  sync.WaitGroup
		sem = make(chan struct{}, 16)
	)
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			info, err := m.cfg.Peer(net.JoinHostPort(n.Addr, strconv.Itoa(n.APIPort))).LocalImage(actx, ref)
			if err != nil || wantID != "" && info.ID != wantID {
				return
			}
			mu.Lock()
			out = append(out, n)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b api.Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// fetchFrom streams the image from one node into a file while verifying it,
// and loads it only if every digest matched.
func (m *Manager) fetchFrom(ctx context.Context, c source, w want, ref string, say func(string)) (string, error) {
	rc, info, err := m.cfg.Peer(c.addr).ImageArchive(ctx, ref)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	wantID := w.id
	if wantID == "" {
		wantID = info.ID
	}
	if wantID == "" || w.id != "" && info.ID != w.id {
		return "", fmt.Errorf("%s offers image %q, not %s", c, short(info.ID), short(w.id))
	}
	dir, err := m.incomingDir()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "transfer-*.tar")
	if err != nil {
		return "", fmt.Errorf("image transfer: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cr := &countingReader{r: rc}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			say(fmt.Sprintf("fetching %s from %s: %s/%s", w.name, c, HumanSize(cr.count()), HumanSize(info.Size)))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	gotID, err := VerifyArchive(cr, f, wantID)
	close(stop)
	wg.Wait()
	if err != nil {
		return "", fmt.Errorf("transfer from %s refused: %w", c, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return "", fmt.Errorf("image transfer: %w", err)
	}
	say(fmt.Sprintf("loading %s (%s, verified) fetched from %s", w.name, HumanSize(cr.count()), c))
	if err := m.cfg.Store.LoadImage(ctx, f); err != nil {
		return "", fmt.Errorf("load image fetched from %s: %w", c, err)
	}
	if _, err := m.cfg.Store.InspectImage(ctx, gotID); err != nil {
		return "", fmt.Errorf("image fetched from %s: loaded, but the engine does not hold %s: %w", c, short(gotID), err)
	}
	m.tag(ctx, w, gotID)
	if err := m.rec.add(gotID); err != nil {
		m.log.Warn("record fetched image", "image", w.name, "err", err)
	}
	m.log.Info("image fetched from another node", "image", w.name, "id", short(gotID), "from", c.node,
		"bytes", cr.count(), "took", time.Since(start).Round(time.Millisecond))
	return gotID, nil
}
