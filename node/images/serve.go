package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Serving this node's images to other nodes (GET /v1/local/images/{ref} and
// /archive).

func toInfo(im engine.Image) api.ImageInfo {
	return api.ImageInfo{ID: im.ID, Tags: im.Tags, Digests: im.Digests, Size: im.Size}
}

// Inspect describes the image ref resolves to here; api.ErrNotFound if none.
func (m *Manager) Inspect(ctx context.Context, ref string) (api.ImageInfo, error) {
	im, err := m.cfg.Store.InspectImage(ctx, ref)
	if errors.Is(err, engine.ErrNoImage) {
		return api.ImageInfo{}, fmt.Errorf("image %s is not on node %s: %w", ref, m.cfg.NodeID, api.ErrNotFound)
	}
	if err != nil {
		return api.ImageInfo{}, err
	}
	return toInfo(im), nil
}

// Archive opens the image ref resolves to as a docker save archive. At most
// MaxUploads are open at once; beyond that it answers api.ErrBusy at once, so the
// asker turns to another node rather than queueing here. Close the reader to free
// the slot.
func (m *Manager) Archive(ctx context.Context, ref string) (io.ReadCloser, api.ImageInfo, error) {
	select {
	case m.uploads <- struct{}{}:
	default:
		return nil, api.ImageInfo{}, fmt.Errorf("node %s already serves %d image transfers: %w", m.cfg.NodeID, cap(m.uploads), api.ErrBusy)
	}
	release := sync.OnceFunc(func() { <-m.uploads })
	info, err := m.Inspect(ctx, ref)
	if err != nil {
		release()
		return nil, api.ImageInfo{}, err
	}
	rc, err := m.cfg.Store.SaveImage(ctx, info.ID)
	if err != nil {
		release()
		return nil, api.ImageInfo{}, err
	}
	var r io.Reader = rc
	if m.corrupt.Add(-1) >= 0 {
		m.log.Warn("test hook: corrupting this image transfer", "image", short(info.ID))
		r = &corrupter{r: rc, at: min(64<<10+123, info.Size/2)}
	}
	return &upload{Reader: r, c: rc, release: release}, info, nil
}

type upload struct {
	io.Reader
	c       io.Closer
	release func()
}

func (u *upload) Close() error {
	defer u.release()
	return u.c.Close()
}

// corrupter flips one byte of a stream at offset at (the CorruptUploads hook).
type corrupter struct {
	r   io.Reader
	at  int64
	off int64
}

func (c *corrupter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.at >= c.off && c.at < c.off+int64(n) {
		p[c.at-c.off] ^= 0xff
	}
	c.off += int64(n)
	return n, err
}
