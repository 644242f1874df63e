// Package forward sends each API request where it is served: here, on the leader
// (proxied whole), or on any manager (for workers); it knows who the leader is and
// keeps the API clients this node uses to reach other nodes.
package forward
