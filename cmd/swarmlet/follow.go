package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// followService reads a service's tasks with blocking queries and hands each
// answer, with the service as it is then, to step until step says it is done
// or fails. A read that fails (a leader change) is tried again from scratch; a
// service that is gone ends the wait. stalled says, in the error, what did not
// happen when ctx ends first.
func followService(ctx context.Context, cl *client.Client, name, stalled string, step func(tasks []api.Task, svc api.ServiceInfo) (done bool, err error)) error {
	var index uint64
	for {
		tasks, idx, err := cl.Tasks(ctx, name, index, 5*time.Second)
		if err == nil {
			var svc api.ServiceInfo
			if svc, err = cl.Service(ctx, name); err == nil {
				index = idx
				if done, err := step(tasks, svc); done || err != nil {
					return err
				}
				continue
			}
		}
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %s: %w", name, stalled, ctx.Err())
		case errors.Is(err, api.ErrNotFound):
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		index = 0
	}
}
