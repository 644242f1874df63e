// Package httpapi is swarmlet's HTTP API: the routes of /v1, their handlers, and
// how requests and answers are read and written. Where a request is served (here,
// the leader, a manager) is node/forward's job; each handler gets the store its
// request was routed with.
package httpapi
