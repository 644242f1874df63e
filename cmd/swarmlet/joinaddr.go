package main

import (
	"context"

	"github.com/swarmlet/swarmlet/node"
	"github.com/swarmlet/swarmlet/node/client"
)

// joinAddr is the MANAGER_ADDR a join command should name for the node the CLI
// talks to: with its port unless that is the default.
func joinAddr(ctx context.Context, cl *client.Client) string {
	info, err := cl.Info(ctx)
	if err != nil {
		return "MANAGER_ADDR"
	}
	port := 0
	if n, err := cl.Node(ctx, info.NodeID); err == nil {
		port = n.APIPort
	}
	return node.JoinAddr(info.Addr, port)
}
