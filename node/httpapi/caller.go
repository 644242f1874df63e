package httpapi

import (
	"fmt"
	"net/http"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// caller is the one place where the identity of the node making a request is read.
// Today it is the node ID the calling node's client names in its header; mutual TLS
// replaces this with the node ID of the caller's certificate (and, for a request a
// manager forwarded, the original caller it vouches for).
func caller(r *http.Request) (string, error) {
	id := r.Header.Get(client.NodeHeader)
	if id == "" {
		return "", fmt.Errorf("this endpoint is for swarmlet nodes; the request names no calling node: %w", api.ErrForbidden)
	}
	if err := api.ValidateID(id); err != nil {
		return "", fmt.Errorf("calling node: %v: %w", err, api.ErrInvalid)
	}
	return id, nil
}
