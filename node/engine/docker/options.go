package docker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// LabelVolume marks a named volume this engine created because a task mounted
// it and it did not exist; it names the node that made it. Swarmlet never
// removes a named volume: its data outlives the task, as with Docker's own.
const LabelVolume = "swarmlet.volume-created-by"

// applyOptions writes a task's mounts and container options (templates already
// expanded by the worker) into its create request, creating the named volumes
// it mounts that do not exist yet. Everything in api.ContainerOptions is
// Docker's own, so each maps onto one field.
func (e *Engine) applyOptions(ctx context.Context, t *api.Task, config *container.Config, hc *container.HostConfig) error {
	spec := &t.Spec
	// Checked again here: the API did, but a spec may reach an engine otherwise.
	if err := spec.ValidateExpanded(); err != nil {
		return fmt.Errorf("%v: %w", err, engine.ErrRejected)
	}
	for _, m := range spec.Mounts {
		dm := mount.Mount{Type: mount.Type(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		switch m.Type {
		case api.MountBind:
			if err := e.checkBindSource(m.Source); err != nil {
				return err
			}
		case api.MountVolume:
			if m.Source != "" {
				if err := e.ensureVolume(ctx, m.Source, t); err != nil {
					return err
				}
			}
		case api.MountTmpfs:
			if m.TmpfsSize > 0 {
				dm.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: m.TmpfsSize}
			}
		}
		hc.Mounts = append(hc.Mounts, dm)
	}
	o := spec.Container
	if o == nil {
		return nil
	}
	config.Hostname = o.Hostname
	config.User = o.User
	config.WorkingDir = o.Workdir
	if len(o.Entrypoint) > 0 {
		config.Entrypoint = o.Entrypoint
	}
	for k, v := range o.ContainerLabels {
		// The API refuses these; a label must never pass a container off as
		// another task's or another node's.
		if !strings.HasPrefix(k, api.ReservedLabelPrefix) {
			config.Labels[k] = v
		}
	}
	if o.Init {
		yes := true
		hc.Init = &yes
	}
	hc.ReadonlyRootfs = o.ReadOnly
	hc.CapAdd, hc.CapDrop = o.CapAdd, o.CapDrop
	hc.Sysctls = o.Sysctls
	for _, u := range o.Ulimits {
		hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if o.PidsLimit > 0 {
		n := o.PidsLimit
		hc.PidsLimit = &n
	}
	// After the cluster's own resolver settings, which stay: the options only
	// tune how the container uses them.
	hc.DNSOptions = append(hc.DNSOptions, o.DNSOptions...)
	return nil
}

// checkBindSource refuses a bind mount whose source is not on this node, in
// words that name it: Docker's own refusal comes from deep in its mount code.
// It can look only when the engine is on this machine (a unix socket).
func (e *Engine) checkBindSource(src string) error {
	if !strings.HasPrefix(e.cli.DaemonHost(), "unix://") {
		return nil // Docker's refusal (bindSourceMissing) still names it
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bind mount source %s does not exist on node %s: %w", src, e.cfg.NodeID, engine.ErrRejected)
	}
	return nil
}

// bindSourceMissing says whether a create failed because a bind source is
// absent on the engine's host.
func bindSourceMissing(err error) bool {
	return err != nil && strings.Contains(err.Error(), "bind source path does not exist")
}

// ensureVolume creates a named local volume the task mounts if the engine has
// none of that name, labelled as swarmlet's. Docker would create it by itself
// at create time, but unlabelled: nobody could tell later where it came from.
func (e *Engine) ensureVolume(ctx context.Context, name string, t *api.Task) error {
	_, err := e.cli.VolumeInspect(ctx, name)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	// Create is idempotent for one name and driver: a task of another node
	// sharing this engine may be creating it too.
	_, err = e.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: map[string]string{
		LabelVolume:         e.cfg.NodeID,
		engine.LabelService: t.ServiceName,
	}})
	if err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return fmt.Errorf("create volume %s: %v: %w", name, err, engine.ErrRejected)
		}
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	e.log.Info("created volume", "volume", name, "task", t.ID, "service", t.ServiceName)
	return nil
}
