package node

import (
	"path/filepath"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
	"github.com/swarmlet/swarmlet/node/httpapi"
	"github.com/swarmlet/swarmlet/node/images"
	"github.com/swarmlet/swarmlet/node/worker"
)

// The node's images (node/images): an engine that runs images gets a manager
// that prepares tasks' images for the worker and serves them to other nodes.

// startImages gives p an image manager when its engine holds images.
func (d *Daemon) startImages(p *nodeParts) {
	store, ok := p.engine.(engine.ImageStore)
	if !ok {
		return
	}
	p.images = images.New(images.Config{
		NodeID: d.id.NodeID,
		Store:  store,
		Peer:   func(addr string) images.Peer { return d.peers.Get(addr) },
		Assignments: func() *api.Assignments {
			if p.agent == nil {
				return &api.Assignments{}
			}
			return p.agent.Latest()
		},
		DataDir:    filepath.Join(d.cfg.DataDir, "engine"),
		MaxUploads: int(envUint("SWARMLET_IMAGE_MAX_UPLOADS")),
		// Test hook (scenarios): corrupt this node's first N image uploads.
		CorruptUploads: int(envUint("SWARMLET_TEST_CORRUPT_IMAGE_UPLOADS")),
		Logger:         d.log.With("component", "images"),
	})
}

// preparer is the worker's view of the image manager (nil without one).
func (p *nodeParts) preparer() worker.Preparer {
	if p == nil || p.images == nil {
		return nil
	}
	return p.images
}

// imageHost is the API's view of the image manager (nil without one).
func (d *Daemon) imageHost() httpapi.ImageHost {
	if d.parts == nil || d.parts.images == nil {
		return nil
	}
	return d.parts.images
}
