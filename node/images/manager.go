package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Peer is another node's API as image sharing uses it (node/client's Client).
type Peer interface {
	// LocalImage describes the image ref resolves to on that node's engine.
	LocalImage(ctx context.Context, ref string) (api.ImageInfo, error)
	// ImageArchive streams that image as a docker save archive, with what the
	// node announces about it (its ID and size). api.ErrBusy: the node serves
	// as many transfers as it will.
	ImageArchive(ctx context.Context, ref string) (io.ReadCloser, api.ImageInfo, error)
}

// Config wires a Manager.
type Config struct {
	NodeID string
	Store  engine.ImageStore
	// Peer is the API of the node at addr (host:port).
	Peer func(addr string) Peer
	// Assignments is the worker's latest session answer: this node's tasks, the
	// registry credentials of their services, who holds which image, every node.
	Assignments func() *api.Assignments
	// DataDir holds transfers while they are verified, and the record of the
	// images this node brought in (prune removes only those).
	DataDir string
	// MaxUploads bounds the transfers this node serves at once (default 2): a
	// node asked by many gets busy answers, and the askers go to the nodes that
	// loaded the image meanwhile.
	MaxUploads int
	// PullAttempts (default 4) and Backoff (default 500 ms, doubled each time)
	// shape retries of a pull after a transient registry error.
	PullAttempts int
	Backoff      time.Duration
	// CorruptUploads is a test hook: the first N archives this node serves have
	// a byte flipped, so a receiver must refuse them.
	CorruptUploads int
	Logger         *slog.Logger
}

// Manager gets images onto this node and serves them to others.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	rec     record
	uploads chan struct{}
	corrupt atomic.Int64
	ctx     context.Context
	cancel  context.CancelFunc

	mu  sync.Mutex
	ops map[string]*op // preparations in flight, shared by the tasks that need one image
}

// New returns a manager; Close ends its preparations in flight.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = 2
	}
	if cfg.PullAttempts <= 0 {
		cfg.PullAttempts = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Assignments == nil {
		cfg.Assignments = func() *api.Assignments { return &api.Assignments{} }
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, rec: record{path: filepath.Join(cfg.DataDir, "images", "fetched.json")},
		uploads: make(chan struct{}, cfg.MaxUploads), ops: map[string]*op{}}
	m.corrupt.Store(int64(cfg.CorruptUploads))
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Close stops preparations in flight.
func (m *Manager) Close() { m.cancel() }

// op is one image being got, with the tasks waiting for it.
type op struct {
	done chan struct{}
	id   string
	err  error

	mu   sync.Mutex
	last string
	subs map[int]func(string)
	next int
}

func (o *op) say(msg string) {
	o.mu.Lock()
	o.last = msg
	subs := make([]func(string), 0, len(o.subs))
	for _, f := range o.subs {
		subs = append(subs, f)
	}
	o.mu.Unlock()
	for _, f := range subs {
		f(msg)
	}
}

func (o *op) subscribe(f func(string)) func() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.subs == nil {
		o.subs = map[int]func(string){}
	}
	k := o.next
	o.next++
	o.subs[k] = f
	if o.last != "" {
		go f(o.last)
	}
	return func() {
		o.mu.Lock()
		delete(o.subs, k)
		o.mu.Unlock()
	}
}

// want is what a task's spec asks for.
type want struct {
	name    string // the image as the user wrote it
	digest  string // registry pin
	id      string // image ID pin
	ref     string // engine.RunImage: what the engine resolves
	service string
}

// display is the image as progress messages name it: as the user wrote it, with
// the pinned digest abbreviated.
func (w want) display() string {
	if w.digest != "" && !strings.Contains(w.name, "@") {
		return w.name + " (" + short(w.digest) + ")"
	}
	return w.name
}

// daemonless drops the "Error response from daemon: " Docker puts before the
// registry's words.
func daemonless(err error) string {
	return strings.TrimPrefix(err.Error(), "Error response from daemon: ")
}

func wantOf(t *api.Task) want {
	return want{name: t.Spec.Image, digest: t.Spec.ImageDigest, id: t.Spec.ImageID, ref: engine.RunImage(t.Spec), service: t.ServiceID}
}

// Prepare makes the task's image present on this node's engine and returns its
// image ID, which the task is then started from. progress hears what is being done
// and how far. An error wrapping engine.ErrRejected means the image cannot be had
// (no such image, access refused, no registry and no node holds it); any other
// error may pass (the task fails and is retried).
func (m *Manager) Prepare(ctx context.Context, t *api.Task, progress func(string)) (string, error) {
	w := wantOf(t)
	if id, ok, err := m.present(ctx, w); err != nil {
		return "", err
	} else if ok {
		return id, nil
	}
	auth := m.auth(w.service)
	key := w.ref
	if auth != "" {
		key += "\x00" + w.service // another service's credentials may differ
	}
	m.mu.Lock()
	o := m.ops[key]
	if o == nil {
		o = &op{done: make(chan struct{})}
		m.ops[key] = o
		go m.run(key, o, w, auth)
	}
	unsub := o.subscribe(progress)
	m.mu.Unlock()
	defer unsub()
	select {
	case <-o.done:
		return o.id, o.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (m *Manager) run(key string, o *op, w want, auth string) {
	// The op outlives the task that started it: others may wait for the same image.
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Minute)
	defer cancel()
	o.id, o.err = m.obtain(ctx, w, auth, o.say)
	m.mu.Lock()
	delete(m.ops, key)
	m.mu.Unlock()
	close(o.done)
}

// present reports whether the image the spec pins (or names) is already here.
func (m *Manager) present(ctx context.Context, w want) (string, bool, error) {
	info, err := m.cfg.Store.InspectImage(ctx, w.ref)
	if errors.Is(err, engine.ErrNoImage) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return info.ID, true, nil
}

func (m *Manager) auth(serviceID string) string {
	if as := m.cfg.Assignments(); as != nil {
		return as.RegistryAuth[serviceID]
	}
	return ""
}

// errNoHolder: no other node holds the image.
var errNoHolder = errors.New("no other node holds the image")

func rejected(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), engine.ErrRejected)
}

// obtain gets an image that is not here. An image pinned to the bits nodes held
// at create (an ID, no registry digest: built or loaded locally) is only fetched
// from nodes; anything else is pulled from its registry first and fetched from
// nodes when the registry cannot serve it.
func (m *Manager) obtain(ctx context.Context, w want, auth string, say func(string)) (string, error) {
	if w.id != "" && w.digest == "" {
		id, err := m.fromPeers(ctx, w, say)
		if errors.Is(err, errNoHolder) {
			return "", rejected("no such image: no node holds %s (%s was pinned to it because no registry served it): load it on a node, or push it to a registry and update the service", short(w.id), w.name)
		}
		return id, err
	}
	pullRef := w.name
	if w.digest != "" {
		pullRef = engine.RepoOf(w.name) + "@" + w.digest
	}
	id, perr := m.pull(ctx, pullRef, w.display(), auth, w, say)
	if perr == nil {
		return id, nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	class := classifyPull(perr)
	if errors.Is(perr, engine.ErrRejected) {
		return "", perr
	}
	say(fmt.Sprintf("pull of %s failed (%s); asking other nodes", w.display(), class))
	id, err := m.fromPeers(ctx, w, say)
	if err == nil {
		return id, nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if !errors.Is(err, errNoHolder) {
		return "", fmt.Errorf("image %s: pull failed: %v; and from other nodes: %w", w.name, perr, err)
	}
	return "", pullFailure(pullRef, auth != "", class, perr)
}

// pullFailure words a pull that nothing else could make up for, quoting the
// registry.
func pullFailure(ref string, withAuth bool, class pullClass, perr error) error {
	reg := registryOf(ref)
	err := daemonless(perr)
	switch class {
	case pullNotFound:
		return rejected("no such image: registry %s has no %s: %v", reg, ref, err)
	case pullDenied:
		hint := "if it needs a login: docker login " + reg + ", then create or update the service with --with-registry-auth"
		if withAuth {
			hint = "the service's credentials (--with-registry-auth) were refused: docker login " + reg + " again and update the service with --with-registry-auth"
		}
		return rejected("registry %s refused access to %s: %v (%s)", reg, ref, err, hint)
	case pullUnreachable:
		return rejected("no such image: no registry answered for %s (%v) and no other node holds it", ref, err)
	default:
		return fmt.Errorf("pull %s from registry %s: %w", ref, reg, perr)
	}
}

// pull pulls ref, retrying transient failures with exponential backoff. A
// registry that refuses is not asked again; one that does not answer is asked
// once more, then other nodes are.
func (m *Manager) pull(ctx context.Context, ref, disp, auth string, w want, say func(string)) (string, error) {
	var last error
	for i := 0; i < m.cfg.PullAttempts; i++ {
		p := &pullProgress{}
		say("pulling " + disp)
		var lastSaid time.Time
		err := m.cfg.Store.PullImage(ctx, ref, auth, func(ev engine.PullEvent) {
			p.add(ev)
			if now := time.Now(); now.Sub(lastSaid) >= 250*time.Millisecond {
				lastSaid = now
				if s := p.String(); s != "" {
					say("pulling " + disp + ": " + s)
				}
			}
		})
		if err == nil {
			info, err := m.cfg.Store.InspectImage(ctx, ref)
			if err != nil {
				return "", fmt.Errorf("image %s pulled but not found: %w", ref, err)
			}
			if w.id != "" && info.ID != w.id {
				return "", rejected("registry %s served image %s for %s, but the service is pinned to %s (another platform?)", registryOf(ref), short(info.ID), ref, short(w.id))
			}
			if err := m.rec.add(info.ID); err != nil {
				m.log.Warn("record pulled image", "image", ref, "err", err)
			}
			m.log.Info("image pulled", "image", ref, "id", short(info.ID), "attempts", i+1)
			return info.ID, nil
		}
		last = err
		c := classifyPull(err)
		if c.refused() || ctx.Err() != nil || c == pullUnreachable && i >= 1 || i == m.cfg.PullAttempts-1 {
			break
		}
		wait := m.cfg.Backoff << i
		wait += time.Duration(rand.Int64N(int64(wait)/4 + 1))
		m.log.Warn("pull failed, retrying", "image", ref, "attempt", i+1, "wait", wait, "class", c.String(), "err", err)
		say(fmt.Sprintf("pulling %s: %v; retry %d/%d in %s", disp, daemonless(err), i+1, m.cfg.PullAttempts-1, wait.Round(10*time.Millisecond)))
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
	return "", last
}

// registryOf is the registry host a reference names: docker.io when it names none.
func registryOf(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

// tag gives an image fetched from another node the name the service uses, so
// the engine lists it as operators expect (a name with a digest cannot be given).
func (m *Manager) tag(ctx context.Context, w want, id string) {
	if w.name == "" || strings.Contains(w.name, "@") || strings.HasPrefix(w.name, "sha256:") {
		return
	}
	if err := m.cfg.Store.TagImage(ctx, id, w.name); err != nil {
		m.log.Warn("tag fetched image", "image", w.name, "id", short(id), "err", err)
	}
}

func (m *Manager) incomingDir() (string, error) {
	dir := filepath.Join(m.cfg.DataDir, "images", "incoming")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("image transfer: %w", err)
	}
	return dir, nil
}
