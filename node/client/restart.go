package client

import (
	"context"
	"net/http"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Restarting tells the leader the calling node's daemon is stopping to restart
// (not leaving): its tasks are kept until the returned time (zero: the cluster
// keeps none).
func (c *Client) Restarting(ctx context.Context) (time.Time, error) {
	var out api.RestartingResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/dispatcher/restarting", nil, &out)
	return out.Until, err
}
