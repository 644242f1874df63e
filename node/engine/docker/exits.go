package docker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Docker sends a container's "die" event, with its exit code, some hundreds of
// milliseconds before its container list stops saying "running" (20.10 on a
// busy machine: ~300 ms, measured). A crash would wait that long to be seen, so
// the engine remembers the exits it heard of and List reports such a container
// as exited at once.

// A dockerd that is shutting down (an engine upgrade, without live-restore)
// stops every container while it still answers on the connections it has: it
// closes only its listener first. Its containers' exits look like crashes, and
// reported so they would be replaced elsewhere, while they are the engine's
// doing and the worker starts them again once it is back. So a list that shows
// an exit is trusted only if the engine still takes a new connection; if not,
// List fails, as it does once the engine is gone.

// notShuttingDown checks, when the list shows a container that exited, that the
// engine still answers on a new connection.
func (e *Engine) notShuttingDown(ctx context.Context, list []engine.Instance) error {
	exited := false
	for _, in := range list {
		exited = exited || in.State.Terminal()
	}
	if !exited {
		return nil
	}
	cli, err := newClient()
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		return fmt.Errorf("list containers: the engine takes no new connection (shutting down?): %w", err)
	}
	return nil
}

// exits is what the event stream said about containers that died.
type exits struct {
	mu   sync.Mutex
	died map[string]exit // by container ID
}

type exit struct {
	code int
	oom  bool
}

// heard records a die or oom event.
func (x *exits) heard(m events.Message) {
	if m.Type != events.ContainerEventType || m.Actor.ID == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.died == nil {
		x.died = map[string]exit{}
	}
	switch m.Action {
	case events.ActionDie:
		e := x.died[m.Actor.ID]
		e.code, _ = strconv.Atoi(m.Actor.Attributes["exitCode"])
		x.died[m.Actor.ID] = e
	case events.ActionOOM:
		e := x.died[m.Actor.ID]
		e.oom = true
		x.died[m.Actor.ID] = e
	case events.ActionDestroy:
		delete(x.died, m.Actor.ID)
	}
}

// exited returns the instance of a container the list still shows running but
// which the events said died: exited with its code.
func (x *exits) exited(c container.Summary, in engine.Instance) (engine.Instance, bool) {
	x.mu.Lock()
	e, ok := x.died[c.ID]
	x.mu.Unlock()
	if !ok {
		return in, false
	}
	in.State, in.ExitCode, in.Health = api.TaskComplete, e.code, ""
	switch {
	case e.oom:
		in.State, in.Err = api.TaskFailed, "out of memory (OOM killed)"
	case e.code != 0:
		in.State, in.Err = api.TaskFailed, fmt.Sprintf("exit status %d", e.code)
	}
	return in, true
}

// forget drops what is known of containers the list no longer shows running:
// the list has caught up with them.
func (x *exits) forget(running map[string]bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id := range x.died {
		if !running[id] {
			delete(x.died, id)
		}
	}
}
