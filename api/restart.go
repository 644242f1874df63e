package api

import "time"

// Daemon restarts move nothing. A daemon stopping gracefully (SIGTERM, not
// `swarmlet leave`) leaves its tasks running and tells the leader so; the leader
// records RestartingUntil (now + the cluster's restart grace) in the node's
// record. While that node is down and the grace lasts, its tasks are neither
// orphaned nor replaced and stay in DNS and behind the VIP, since they still
// serve; the returning node adopts them. A node that dies without a word (kill
// -9, a lost machine) has no mark and its tasks are replaced as soon as it is
// seen down.

// DefaultRestartGrace is how long a restarting node's tasks are kept
// (swarmlet init --restart-grace).
const DefaultRestartGrace = 60 * time.Second

// Restarting reports whether n is down but within the grace of a restart it
// announced: its tasks still run and are not to be replaced before then.
func (n *Node) Restarting(now time.Time) bool {
	return n.Status == NodeDown && now.Before(n.RestartingUntil)
}

// TasksServe reports whether the tasks n runs belong in the endpoint table:
// the node is ready, or down while restarting. It needs no clock: when the
// grace runs out the orchestrator marks the node's tasks orphaned, which takes
// them out.
func (n *Node) TasksServe() bool {
	return n.Status == NodeReady || !n.RestartingUntil.IsZero() && n.Status == NodeDown
}

// RestartingResponse answers a node's restart notice
// (POST /v1/dispatcher/restarting): until when its tasks are kept, zero when
// the cluster keeps none (--restart-grace 0).
type RestartingResponse struct {
	Until time.Time `json:"until,omitzero"`
}
