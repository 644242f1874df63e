package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/images"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Images: this node's engine images as other nodes fetch them (node to node), an
// operator's prune, and how create and update pin a service's image.

// ImageHost is this node's images (node/images.Manager); nil when its engine
// runs no images (the process engine).
type ImageHost interface {
	Inspect(ctx context.Context, ref string) (api.ImageInfo, error)
	Archive(ctx context.Context, ref string) (io.ReadCloser, api.ImageInfo, error)
	Prune(ctx context.Context) (api.ImagePruneReport, error)
}

func (s *Server) imageHost(w http.ResponseWriter) ImageHost {
	if s.cfg.Images == nil {
		writeError(w, fmt.Errorf("node %s runs no images (its engine is not docker): %w", s.cfg.Node.ID(), api.ErrInvalid))
	}
	return s.cfg.Images
}

func imageRef(r *http.Request) (string, error) {
	ref := r.PathValue("ref")
	if ref == "" || len(ref) > 512 || strings.ContainsAny(ref, " \t\r\n") {
		return "", badRequest("invalid image reference %q", ref)
	}
	return ref, nil
}

func (s *Server) handleLocalImage(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	ref, err := imageRef(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ih := s.imageHost(w)
	if ih == nil {
		return
	}
	info, err := ih.Inspect(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 0, info)
}

// handleLocalImageArchive streams an image to another node. Only nodes ask
// (caller), and the image's ID and size go ahead in headers so the receiver can
// refuse a transfer that does not match. A receiver that stops reading for a
// while loses the transfer, so it cannot hold one of the few upload slots.
func (s *Server) handleLocalImageArchive(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	from, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ref, err := imageRef(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ih := s.imageHost(w)
	if ih == nil {
		return
	}
	rc, info, err := ih.Archive(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set(api.ImageIDHeader, info.ID)
	w.Header().Set(api.ImageSizeHeader, strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	rctl := http.NewResponseController(w)
	buf := make([]byte, 256<<10)
	var sent int64
	start := time.Now()
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			_ = rctl.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(buf[:n]); err != nil {
				s.log.Warn("image transfer to node broke", "node", from, "image", ref, "sent", sent, "err", err)
				return
			}
			sent += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			// The receiver sees a short archive and refuses it.
			s.log.Warn("image transfer: reading the engine's archive failed", "node", from, "image", ref, "err", rerr)
			return
		}
	}
	s.log.Info("image sent to node", "node", from, "image", ref, "bytes", sent, "took", time.Since(start).Round(time.Millisecond))
}

func (s *Server) handleImagePrune(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	ih := s.imageHost(w)
	if ih == nil {
		return
	}
	rep, err := ih.Prune(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 0, rep)
}

// registryAuth is the request's registry credentials, checked to be readable.
func registryAuth(r *http.Request) (string, error) {
	a := r.Header.Get(api.RegistryAuthHeader)
	if a == "" {
		return "", nil
	}
	if len(a) > 16<<10 {
		return "", badRequest("registry credentials: more than 16 KiB")
	}
	if _, err := images.DecodeAuth(a); err != nil {
		return "", badRequest("%v", err)
	}
	return a, nil
}

// pinImage sets spec's image pins before create (old nil) or update writes it,
// following ?resolve_image (always: the default of create; changed: of update;
// never), and returns the request's registry credentials and warnings for the
// user. Resolving asks the ready docker nodes which image they hold under that
// name, and the registry when the image is not a local one; see api/images.go.
func (s *Server) pinImage(r *http.Request, st *raftstore.Store, spec *api.ServiceSpec, old *api.Service) (string, []string, error) {
	auth, err := registryAuth(r)
	if err != nil {
		return "", nil, err
	}
	mode := r.URL.Query().Get("resolve_image")
	switch {
	case mode == "" && old == nil:
		mode = api.ResolveAlways
	case mode == "":
		mode = api.ResolveChanged
	case mode != api.ResolveAlways && mode != api.ResolveChanged && mode != api.ResolveNever:
		return "", nil, badRequest("resolve_image %q: use always, changed or never", mode)
	}
	sameImage := old != nil && old.Spec.Image == spec.Image
	if mode == api.ResolveNever || mode == api.ResolveChanged && sameImage {
		spec.ImageDigest, spec.ImageID = "", ""
		if sameImage {
			spec.ImageDigest, spec.ImageID = old.Spec.ImageDigest, old.Spec.ImageID
		}
		return auth, nil, nil
	}
	lookupAuth := auth
	if lookupAuth == "" && old != nil {
		lookupAuth = st.Snapshot().RegistryAuth(old.ID)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	warnings := s.resolveImage(ctx, st, spec, lookupAuth)
	for _, w := range warnings {
		s.log.Info("image pin", "service", spec.Name, "image", spec.Image, "note", w)
	}
	return auth, warnings, nil
}

// holder is one image some nodes hold under the name asked for.
type holder struct {
	nodes    []string // hostnames
	pulled   bool     // it came from a registry (has a registry digest)
	id, desc string
}

func (s *Server) resolveImage(ctx context.Context, st *raftstore.Store, spec *api.ServiceSpec, auth string) []string {
	spec.ImageDigest, spec.ImageID = "", ""
	var docker []*api.Node
	for _, n := range st.Snapshot().Nodes() {
		if n.Engine == "docker" && n.Status == api.NodeReady {
			docker = append(docker, n)
		}
	}
	if len(docker) == 0 {
		return nil // the process engine runs programs, not images: nothing to pin
	}
	ref, err := images.ParseReference(spec.Image)
	if err != nil {
		return []string{fmt.Sprintf("%s is not an image reference (%v): not pinned", spec.Image, err)}
	}
	if d, ok := ref.(name.Digest); ok {
		spec.ImageDigest = d.DigestStr()
	}
	held := s.imageHolders(ctx, docker, spec.Image)
	local := len(held) > 0
	for _, h := range held {
		local = local && !h.pulled
	}
	pinHeld := func(why string) []string {
		switch len(held) {
		case 0:
			return []string{why + ": not pinned; each node gets " + spec.Image + " itself"}
		case 1:
			spec.ImageID = held[0].id
			return []string{fmt.Sprintf("%s: pinned to image %s, held by %s; nodes without it fetch it from those that hold it",
				why, shortDigest(held[0].id), strings.Join(held[0].nodes, ", "))}
		}
		var ds []string
		for _, h := range held {
			ds = append(ds, h.desc)
		}
		return []string{fmt.Sprintf("%s, and nodes hold different images named %s (%s): not pinned; give the image a unique tag",
			why, spec.Image, strings.Join(ds, "; "))}
	}
	if local && spec.ImageDigest == "" {
		// Built or loaded here, never pulled: the registry (if any) has other bits.
		return pinHeld(spec.Image + " is a local image, in no registry")
	}
	pin, err := images.Resolve(ctx, spec.Image, auth, s.cfg.AdvertiseAddr)
	if err != nil {
		return pinHeld(err.Error())
	}
	spec.ImageDigest, spec.ImageID = pin.Digest, pin.ID
	return nil
}

// imageHolders asks every ready docker node, in parallel and briefly, which
// image it holds under the name ref.
func (s *Server) imageHolders(ctx context.Context, nodes []*api.Node, ref string) []*holder {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		byID = map[string]*holder{}
	)
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := s.cfg.Peers.Get(net.JoinHostPort(n.Addr, strconv.Itoa(n.APIPort))).LocalImage(actx, ref)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			h := byID[info.ID]
			if h == nil {
				h = &holder{id: info.ID}
				byID[info.ID] = h
			}
			h.nodes = append(h.nodes, n.Hostname)
			h.pulled = h.pulled || len(info.Digests) > 0
		}()
	}
	wg.Wait()
	out := make([]*holder, 0, len(byID))
	for _, h := range byID {
		sort.Strings(h.nodes)
		h.desc = shortDigest(h.id) + " on " + strings.Join(h.nodes, ", ")
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// withWarnings is a create or update answer: the service and what to tell the user.
func withWarnings(res any, warnings []string) any {
	if svc, ok := res.(*api.Service); ok {
		return api.ServiceCreateAnswer{Service: *svc, Warnings: warnings}
	}
	return res
}
