package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/swarmlet/swarmlet/node/engine"
)

// The engine's images: what node/images needs to get a task's image onto this
// node (pull, or save on one node and load on another) and to prune.

var _ engine.ImageStore = (*Engine)(nil)

// InspectImage implements engine.ImageStore.
func (e *Engine) InspectImage(ctx context.Context, ref string) (engine.Image, error) {
	info, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return engine.Image{}, fmt.Errorf("image %s: %w", ref, engine.ErrNoImage)
	}
	if err != nil {
		return engine.Image{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return engine.Image{ID: info.ID, Tags: info.RepoTags, Digests: info.RepoDigests, Size: info.Size}, nil
}

// PullImage implements engine.ImageStore. Docker reports most pull failures
// inside the progress stream, after a 200 answer; both kinds come back as the
// error, in the registry's words.
func (e *Engine) PullImage(ctx context.Context, ref, auth string, ev func(engine.PullEvent)) error {
	rc, err := e.cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer rc.Close()
	return readStream(rc, func(m jsonmessage.JSONMessage) {
		if ev == nil || m.ID == "" {
			return
		}
		p := engine.PullEvent{Layer: m.ID, Status: m.Status}
		if m.Progress != nil {
			p.Current, p.Total = m.Progress.Current, m.Progress.Total
		}
		ev(p)
	})
}

// readStream reads a JSON message stream to its end and returns the first error
// message in it.
func readStream(r io.Reader, each func(jsonmessage.JSONMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read docker's answer: %w", err)
		}
		if m.Error != nil && m.Error.Message != "" {
			return errors.New(m.Error.Message)
		}
		if m.ErrorMessage != "" { //nolint:staticcheck // engines older than the field's replacement
			return errors.New(m.ErrorMessage) //nolint:staticcheck
		}
		each(m)
	}
}

// SaveImage implements engine.ImageStore.
func (e *Engine) SaveImage(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := e.cli.ImageSave(ctx, []string{id})
	if cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %s: %w", id, engine.ErrNoImage)
	}
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", id, err)
	}
	return rc, nil
}

// LoadImage implements engine.ImageStore.
func (e *Engine) LoadImage(ctx context.Context, r io.Reader) error {
	resp, err := e.cli.ImageLoad(ctx, r)
	if err != nil {
		return fmt.Errorf("load image: %w", err)
	}
	defer resp.Body.Close()
	if !resp.JSON {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := readStream(resp.Body, func(jsonmessage.JSONMessage) {}); err != nil {
		return fmt.Errorf("load image: %w", err)
	}
	return nil
}

// TagImage implements engine.ImageStore.
func (e *Engine) TagImage(ctx context.Context, id, ref string) error {
	if err := e.cli.ImageTag(ctx, id, ref); err != nil {
		return fmt.Errorf("tag image %s as %s: %w", id, ref, err)
	}
	return nil
}

// RemoveImage implements engine.ImageStore. Without force, Docker refuses to
// remove an image any container uses, which is the guarantee prune relies on.
func (e *Engine) RemoveImage(ctx context.Context, id string) error {
	_, err := e.cli.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// ImagesInUse implements engine.ImageStore.
func (e *Engine) ImagesInUse(ctx context.Context) ([]string, error) {
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		if strings.HasPrefix(c.ImageID, "sha256:") {
			out = append(out, c.ImageID)
		}
	}
	return out, nil
}
