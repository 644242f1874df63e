// Package node is the swarmlet daemon: configuration, wiring per role, start and stop order, and the HTTP API.
package node
