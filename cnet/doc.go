// Package cnet is the cluster network's kernel side: per-node subnets carved from the container pool, a VXLAN overlay programmed from a plain peer table, and the opening in Docker's firewall.
package cnet
