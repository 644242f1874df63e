package main

import (
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/swarmlet/swarmlet/scenarios/bed"
)

// A registry inside the test: go-containerregistry's in-memory one, optionally
// behind a password, with a fault knob. Docker treats registries on 127.0.0.0/8 as
// insecure by default, so the machine's dockerd pulls from it in plain HTTP.

type testRegistry struct {
	addr       string // host:port
	user, pass string // "" for an open registry
	// faults is how many manifest requests from Docker's own puller are answered
	// 503 (a registry hiccup) before it behaves.
	faults atomic.Int32
	// rate, if set, caps blob downloads at this many bytes a second, so a pull
	// lasts long enough for its progress to be seen.
	rate atomic.Int64

	handler http.Handler
}

// slowWriter paces a response to about rate bytes a second.
type slowWriter struct {
	http.ResponseWriter
	rate int64
}

func (s slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := min(len(p), 64<<10)
		m, err := s.ResponseWriter.Write(p[:chunk])
		n += m
		if err != nil {
			return n, err
		}
		p = p[chunk:]
		time.Sleep(time.Duration(int64(chunk) * int64(time.Second) / s.rate))
	}
	return n, nil
}

func startRegistry(t testing.TB, addr, user, pass string) *testRegistry {
	t.Helper()
	r := &testRegistry{addr: addr, user: user, pass: pass}
	r.handler = r.newHandler()
	r.serve(t, net.Listen)
	return r
}

// listenIn serves the same registry (the same content) on its address inside
// host h's network namespace too: each host's engine pulls from its own
// loopback, which Docker treats as an insecure registry without any setting.
func (r *testRegistry) listenIn(t testing.TB, h *bed.Host) {
	t.Helper()
	r.serve(t, func(network, addr string) (net.Listener, error) {
		var ln net.Listener
		err := h.Do(func() error {
			var err error
			ln, err = net.Listen(network, addr)
			return err
		})
		return ln, err
	})
}

func (r *testRegistry) serve(t testing.TB, listen func(network, addr string) (net.Listener, error)) {
	t.Helper()
	ln, err := listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("registry on %s: %v", r.addr, err)
	}
	srv := &http.Server{Handler: r.handler}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

func (r *testRegistry) newHandler() http.Handler {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="swl-img-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		if strings.Contains(req.URL.Path, "/manifests/") && strings.Contains(req.UserAgent(), "docker/") && r.faults.Add(-1) >= 0 {
			http.Error(w, "registry hiccup (test fault)", http.StatusServiceUnavailable)
			return
		}
		if rate := r.rate.Load(); rate > 0 && strings.Contains(req.URL.Path, "/blobs/") && req.Method == http.MethodGet {
			w = slowWriter{ResponseWriter: w, rate: rate}
		}
		inner.ServeHTTP(w, req)
	})
	return h
}

var (
	baseOnce sync.Once
	baseImg  v1.Image
	baseErr  error
)

// whoamiImage is the project's test image (make image), read from the local
// engine with docker save.
func whoamiImage(t testing.TB) v1.Image {
	t.Helper()
	baseOnce.Do(func() {
		dir, err := os.MkdirTemp("", "swl-img-base")
		if err != nil {
			baseErr = err
			return
		}
		path := filepath.Join(dir, "whoami.tar")
		if out, err := osexec.Command("docker", "save", "-o", path, "swarmlet/whoami:test").CombinedOutput(); err != nil {
			baseErr = errors.New("docker save swarmlet/whoami:test: " + string(out))
			return
		}
		baseImg, baseErr = tarball.ImageFromPath(path, nil)
		if baseErr == nil {
			_, baseErr = baseImg.ConfigName() // read it now, the file goes at exit
		}
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return baseImg
}

// push writes the whoami image plus a filler layer of random bytes (so every
// push is a new image, of the size asked for) under repoTag, and returns its
// manifest digest and image ID.
func (r *testRegistry) push(t testing.TB, repoTag string, filler int64) (digest, id string) {
	t.Helper()
	layer, err := random.Layer(filler, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(whoamiImage(t), layer)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.addr+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var auth authn.Authenticator = authn.Anonymous
	if r.user != "" {
		auth = &authn.Basic{Username: r.user, Password: r.pass}
	}
	if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, _ := img.Digest()
	cfg, _ := img.ConfigName()
	return d.String(), cfg.String()
}

// removeImagesOf removes from the machine's engine every image named under
// prefix (this test's registries): never another name, since other tests share
// the engine.
func removeImagesOf(t *testing.T, prefix string) {
	t.Helper()
	out, err := osexec.Command("docker", "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").Output()
	if err != nil {
		t.Logf("docker images: %v", err)
		return
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], prefix) && !seen[f[1]] {
			seen[f[1]] = true
			_ = osexec.Command("docker", "rmi", "-f", f[1]).Run()
		}
	}
	// Images pulled by digest have no tag: find them by their digests.
	out, _ = osexec.Command("docker", "images", "--digests", "--no-trunc", "--format", "{{.Repository}} {{.ID}}").Output()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], prefix) && !seen[f[1]] {
			seen[f[1]] = true
			_ = osexec.Command("docker", "rmi", "-f", f[1]).Run()
		}
	}
}

// dockerConfig writes a docker client config holding a login for reg, as
// docker login would, and returns its directory (for DOCKER_CONFIG).
func dockerConfig(t *testing.T, reg, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{reg: map[string]string{"auth": b64(user + ":" + pass)}}})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
