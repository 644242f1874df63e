// Package ipam is the cluster's address plan: the container pool and each
// node's subnet of it, and the service range VIPs come from. It is pure (no
// netlink, no I/O), so the FSM allocates subnets with it inside Apply, and
// init checks a plan with the same rules.
package ipam
