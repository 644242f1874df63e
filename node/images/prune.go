package images

import (
	"context"
	"errors"
	"fmt"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Prune removes the images this node brought in (pulled, or fetched from another
// node) that no task of this node uses and no container on the engine uses. It
// never touches an image it did not bring in: the operator's builds and pulls,
// or those of another node sharing the engine, stay.
func (m *Manager) Prune(ctx context.Context) (api.ImagePruneReport, error) {
	rep := api.ImagePruneReport{Removed: []api.ImageInfo{}}
	fetched, err := m.rec.list()
	if err != nil {
		return rep, err
	}
	inUse := map[string]bool{}
	ids, err := m.cfg.Store.ImagesInUse(ctx)
	if err != nil {
		return rep, fmt.Errorf("image prune: %w", err)
	}
	for _, id := range ids {
		inUse[id] = true
	}
	if as := m.cfg.Assignments(); as != nil {
		for _, t := range as.Tasks {
			if t.Status.State.Terminal() || t.DesiredState > api.TaskRunning {
				continue
			}
			// A task not started yet uses its image as much as a running one.
			if t.Status.ImageID != "" {
				inUse[t.Status.ImageID] = true
			}
			if im, err := m.cfg.Store.InspectImage(ctx, engine.RunImage(t.Spec)); err == nil {
				inUse[im.ID] = true
			}
		}
	}
	for _, id := range fetched {
		if inUse[id] {
			rep.InUse++
			continue
		}
		im, err := m.cfg.Store.InspectImage(ctx, id)
		if errors.Is(err, engine.ErrNoImage) {
			_ = m.rec.remove(id) // removed by someone else
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("image prune: %w", err)
		}
		if err := m.removeImage(ctx, im); err != nil {
			// Docker refuses while a container uses it (one created since the check).
			m.log.Info("image kept", "id", short(id), "err", err)
			rep.InUse++
			continue
		}
		_ = m.rec.remove(id)
		rep.Removed = append(rep.Removed, toInfo(im))
		rep.Reclaimed += im.Size
		m.log.Info("image pruned", "id", short(id), "tags", im.Tags)
	}
	return rep, nil
}

// removeImage removes every name of an image, then the image: by ID alone, an
// image with names in several repositories needs force, and force is what prune
// must never use.
func (m *Manager) removeImage(ctx context.Context, im engine.Image) error {
	for _, ref := range append(append([]string{}, im.Tags...), im.Digests...) {
		if err := m.cfg.Store.RemoveImage(ctx, ref); err != nil {
			return err
		}
	}
	return m.cfg.Store.RemoveImage(ctx, im.ID)
}
