package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// AllTasks lists the tasks of every service, or of one node when node is set; with
// index > 0 it blocks until the state passes index.
func (c *Client) AllTasks(ctx context.Context, node string, index uint64, wait time.Duration) ([]api.Task, uint64, error) {
	var out []api.Task
	q := Blocking(index, wait)
	if node != "" {
		q += "&node=" + url.QueryEscape(node)
	}
	idx, err := c.Do(ctx, http.MethodGet, "/v1/tasks?"+q, nil, &out)
	return out, idx, err
}
