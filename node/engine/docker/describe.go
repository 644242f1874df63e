package docker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Describe asks the Docker engine what a node registers of it: its platform
// (OSType, Architecture, as Swarm's node.platform.os and .arch) and its labels
// (dockerd --label, as Swarm's engine.labels).
func Describe(ctx context.Context) (api.Platform, map[string]string, error) {
	cli, err := newClient()
	if err != nil {
		return api.Platform{}, nil, fmt.Errorf("docker engine: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cli.Info(ctx)
	if err != nil {
		return api.Platform{}, nil, fmt.Errorf("docker info: %w", err)
	}
	var labels map[string]string
	for _, kv := range info.Labels {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			continue
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	return api.Platform{OS: info.OSType, Arch: info.Architecture}, labels, nil
}
