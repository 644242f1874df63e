package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// archive builds a docker save archive of one image with these layer contents,
// in the classic layout (oci false: <id>.json, <dir>/layer.tar) or the OCI one,
// and returns the image ID with it. dupLast makes the last layer a symlink to
// the first, as docker save writes a repeated layer.
func archive(layers []string, oci, dupLast bool) (string, []byte) {
	var diffIDs, paths []string
	type file struct {
		name, link string
		body       []byte
	}
	var files []file
	for i, l := range layers {
		body := []byte(l)
		diffIDs = append(diffIDs, digestOf(body))
		p := fmt.Sprintf("layer%d/layer.tar", i)
		if oci {
			p = "blobs/sha256/" + strings.TrimPrefix(digestOf(body), "sha256:")
		}
		if dupLast && i == len(layers)-1 {
			p = fmt.Sprintf("layer%d/layer.tar", i)
			files = append(files, file{name: p, link: "../" + paths[0]})
		} else {
			files = append(files, file{name: p, body: body})
		}
		paths = append(paths, p)
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	id := digestOf(cfg)
	cfgPath := strings.TrimPrefix(id, "sha256:") + ".json"
	if oci {
		cfgPath = "blobs/sha256/" + strings.TrimPrefix(id, "sha256:")
	}
	files = append(files, file{name: cfgPath, body: cfg})
	man, _ := json.Marshal([]map[string]any{{"Config": cfgPath, "RepoTags": nil, "Layers": paths}})
	files = append(files, file{name: "manifest.json", body: man})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if f.link != "" {
			_ = tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeSymlink, Linkname: f.link, Mode: 0o644})
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Size: int64(len(f.body)), Mode: 0o644})
		_, _ = tw.Write(f.body)
	}
	_ = tw.Close()
	return id, buf.Bytes()
}

// fakeStore is an engine's image store in memory: images are their archives.
type fakeStore struct {
	mu     sync.Mutex
	images map[string]*fakeImage // by ID
	tags   map[string]string     // name:tag or name@digest -> ID
	inUse  []string
	pull   func(ref string, ev func(engine.PullEvent)) (id string, archive []byte, err error)
	pulls  int
	loads  int
}

type fakeImage struct {
	archive []byte
}

func newFakeStore() *fakeStore {
	return &fakeStore{images: map[string]*fakeImage{}, tags: map[string]string{}}
}

func (s *fakeStore) add(ref string, archive []byte) string {
	id, err := VerifyArchive(bytes.NewReader(archive), io.Discard, "")
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images[id] = &fakeImage{archive: archive}
	if ref != "" {
		s.tags[ref] = id
	}
	return id
}

func (s *fakeStore) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.images[id] != nil
}

func (s *fakeStore) InspectImage(_ context.Context, ref string) (engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := ref
	if t, ok := s.tags[ref]; ok {
		id = t
	}
	if s.images[id] == nil {
		return engine.Image{}, fmt.Errorf("image %s: %w", ref, engine.ErrNoImage)
	}
	im := engine.Image{ID: id, Size: int64(len(s.images[id].archive))}
	for t, tid := range s.tags {
		if tid == id {
			im.Tags = append(im.Tags, t)
		}
	}
	return im, nil
}

func (s *fakeStore) PullImage(_ context.Context, ref, _ string, ev func(engine.PullEvent)) error {
	s.mu.Lock()
	s.pulls++
	pull := s.pull
	s.mu.Unlock()
	if pull == nil {
		return fmt.Errorf("Get \"http://r/v2/\": dial tcp 127.0.0.9:5000: connect: connection refused")
	}
	_, a, err := pull(ref, ev)
	if err != nil {
		return err
	}
	s.add(ref, a)
	return nil
}

func (s *fakeStore) SaveImage(_ context.Context, id string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.images[id]
	if im == nil {
		return nil, engine.ErrNoImage
	}
	return io.NopCloser(bytes.NewReader(im.archive)), nil
}

func (s *fakeStore) LoadImage(_ context.Context, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.loads++
	s.mu.Unlock()
	s.add("", b)
	return nil
}

func (s *fakeStore) TagImage(_ context.Context, id, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags[ref] = id
	return nil
}

func (s *fakeStore) RemoveImage(_ context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tags[ref]; ok {
		delete(s.tags, ref)
		return nil
	}
	for _, u := range s.inUse {
		if u == ref {
			return fmt.Errorf("conflict: image %s is in use", ref)
		}
	}
	delete(s.images, ref)
	return nil
}

func (s *fakeStore) ImagesInUse(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.inUse...), nil
}

// peerNode is another node as a Peer: its own store served through a Manager,
// as the API does.
type peerNode struct {
	m *Manager
}

func (p peerNode) LocalImage(ctx context.Context, ref string) (api.ImageInfo, error) {
	return p.m.Inspect(ctx, ref)
}

func (p peerNode) ImageArchive(ctx context.Context, ref string) (io.ReadCloser, api.ImageInfo, error) {
	return p.m.Archive(ctx, ref)
}
