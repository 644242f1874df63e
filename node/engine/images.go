package engine

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// ErrNoImage is returned by an ImageStore for an image the engine does not hold.
var ErrNoImage = errors.New("no such image")

// Image is one image an engine holds.
type Image struct {
	ID      string   // sha256:... (the config digest)
	Tags    []string // name:tag
	Digests []string // name@sha256:... (only for images pulled from a registry)
	Size    int64
}

// PullEvent is one line of a pull's progress: a layer (ID) and how far it is.
type PullEvent struct {
	Layer   string
	Status  string // Downloading, Download complete, Pull complete, Already exists, ...
	Current int64
	Total   int64
}

// ImageStore is what an engine whose tasks run images offers for getting them
// onto the node: docker implements it; the process engine does not.
type ImageStore interface {
	// InspectImage describes the image a reference (name:tag, name@digest or an
	// ID) resolves to here; ErrNoImage if none.
	InspectImage(ctx context.Context, ref string) (Image, error)
	// PullImage pulls ref from its registry with the given credentials (docker's
	// X-Registry-Auth encoding, "" for none), reporting progress to ev.
	PullImage(ctx context.Context, ref, auth string, ev func(PullEvent)) error
	// SaveImage streams the image as a docker save archive.
	SaveImage(ctx context.Context, id string) (io.ReadCloser, error)
	// LoadImage loads a docker save archive.
	LoadImage(ctx context.Context, r io.Reader) error
	// TagImage gives an image another name:tag.
	TagImage(ctx context.Context, id, ref string) error
	// RemoveImage removes an image by ID unless a container uses it.
	RemoveImage(ctx context.Context, id string) error
	// ImagesInUse lists the image IDs of every container on the engine, whoever
	// owns it (nodes may share one engine).
	ImagesInUse(ctx context.Context) ([]string, error)
}

// RunImage is the reference a task's workload is created from: the pinned image
// ID when there is one (it names the same bits whether the image was pulled or
// loaded from another node, which carries no registry digest), else name@digest,
// else the name as given.
func RunImage(s api.ServiceSpec) string {
	switch {
	case s.ImageID != "":
		return s.ImageID
	case s.ImageDigest != "":
		return RepoOf(s.Image) + "@" + s.ImageDigest
	default:
		return s.Image
	}
}

// RepoOf strips a reference's tag and digest: registry.example:5000/a/b:v1@sha256:..
// gives registry.example:5000/a/b.
func RepoOf(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	return ref
}
