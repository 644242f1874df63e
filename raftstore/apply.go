package raftstore

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// Apply applies one command at a Raft index. This is the FSM's single switch; it
// must stay deterministic: the same commands in the same order give the same state.
// A returned error is a business refusal and the state is unchanged.
func (s *State) Apply(index uint64, c Command) (any, error) {
	txn := s.current().Txn(true)
	defer txn.Abort()
	txn.TrackChanges()
	var (
		res any
		err error
	)
	before := captureBefore(txn, c)
	switch c := c.(type) {
	case *ClusterInit:
		res, err = applyClusterInit(txn, index, c)
	case *NodeUpsert:
		res, err = applyNodeUpsert(txn, index, c)
	case *NodeStatus:
		res, err = applyNodeStatus(txn, index, c)
	case *NodeUpdate:
		res, err = applyNodeUpdate(txn, index, c)
	case *NodeRemove:
		res, err = applyNodeRemove(txn, index, c)
	case *ServiceCreate:
		res, err = applyServiceCreate(txn, index, c)
	case *ServiceUpdate:
		res, err = applyServiceUpdate(txn, index, c)
	case *ServiceScale:
		res, err = applyServiceScale(txn, index, c)
	case *ServiceRemove:
		res, err = applyServiceRemove(txn, index, c)
	case *TaskOps:
		res, err = applyTaskOps(txn, index, c)
	case *TokenRotate:
		res, err = applyTokenRotate(txn, index, c)
	case *ServiceRollback:
		res, err = applyServiceRollback(txn, index, c)
	case *ServiceUpdateStatus:
		res, err = applyServiceUpdateStatus(txn, index, c)
	case *LeaderElected:
		res = c // nothing but its event
	case *CAUpdate:
		res, err = applyCAUpdate(txn, index, c)
	case *GossipKeysSet:
		res, err = applyGossipKeys(txn, index, c)
	case *UnlockKeySet:
		res, err = applyUnlockKey(txn, index, c)
	case *NodeCert:
		res, err = applyNodeCert(txn, index, c)
	case *NodeRestarting:
		res, err = applyNodeRestarting(txn, index, c)
	case *SecretCreate:
		res, err = applySecretCreate(txn, index, c)
	case *SecretUpdate:
		res, err = applySecretUpdate(txn, index, c)
	case *SecretRemove:
		res, err = applySecretRemove(txn, index, c)
	case *NodeStatuses:
		res, err = applyNodeStatuses(txn, index, c)
	default:
		panic(fmt.Sprintf("raftstore: no apply for %T", c)) // every MsgType must have a case
	}
	if err != nil {
		return nil, err
	}
	recordEvents(txn, index, c, before, res)
	s.commit(txn, index)
	return res, nil
}

func getCluster(txn *memdb.Txn) *Cluster {
	raw, _ := txn.First(tableCluster, "id", "cluster")
	if raw == nil {
		return nil
	}
	return raw.(*clusterRow).C
}

func mustInsert(txn *memdb.Txn, table string, obj any) {
	if err := txn.Insert(table, obj); err != nil {
		panic(fmt.Sprintf("raftstore: insert %s: %v", table, err)) // schema violation: a bug
	}
}

func applyClusterInit(txn *memdb.Txn, index uint64, c *ClusterInit) (any, error) {
	if getCluster(txn) != nil {
		return nil, fmt.Errorf("cluster already initialised: %w", ErrInvalid)
	}
	if err := checkPlan(c.ClusterNetwork); err != nil {
		return nil, err
	}
	cl := &Cluster{ID: c.ClusterID, Trust: c.Trust,
		ClusterNetwork: c.ClusterNetwork, PortRange: c.PortRange, RestartGrace: c.RestartGrace, CreateIndex: index, ModifyIndex: index}
	putCluster(txn, cl)
	return cl, nil
}

// clusterRow gives the singleton cluster record the ID memdb indexes on.
type clusterRow struct {
	ID string
	C  *Cluster
}

func putCluster(txn *memdb.Txn, c *Cluster) {
	mustInsert(txn, tableCluster, &clusterRow{ID: "cluster", C: c})
}

func getNode(txn *memdb.Txn, id string) *api.Node {
	raw, _ := txn.First(tableNodes, "id", id)
	if raw == nil {
		return nil
	}
	return raw.(*api.Node)
}

func applyNodeUpsert(txn *memdb.Txn, index uint64, c *NodeUpsert) (any, error) {
	n := c.Node
	if n.ID == "" {
		return nil, fmt.Errorf("node without ID: %w", ErrInvalid)
	}
	old := getNode(txn, n.ID)
	if old == nil && c.Refresh {
		return nil, fmt.Errorf("node %s was removed from the cluster: %w", n.ID, ErrNotFound)
	}
	if err := assignSubnet(txn, getCluster(txn), &n, old); err != nil {
		return nil, err
	}
	if old != nil {
		// The operator owns availability and labels; a restarting node must not reset them.
		n.Availability, n.Labels = old.Availability, old.Labels
		n.CreatedAt, n.CreateIndex = old.CreatedAt, old.CreateIndex
		if n.CertIssuer == "" {
			n.CertIssuer, n.CertExpiry = old.CertIssuer, old.CertExpiry
		}
		if n.Status == "" || c.Refresh {
			// Liveness is gossip's (NodeStatus): a node's registration carries
			// the copy its handler read, which a NodeStatus committed meanwhile
			// has made stale (a node back from a restart was set down again).
			n.Status, n.StatusAt = old.Status, old.StatusAt
		}
		n.RestartingUntil = restartMarkAfterUpsert(old, c)
	} else {
		n.CreateIndex = index
		if n.Availability == "" {
			n.Availability = api.AvailabilityActive
		}
		if n.Status == "" {
			n.Status = api.NodeReady
		}
	}
	n.ModifyIndex = index
	mustInsert(txn, tableNodes, &n)
	return &n, nil
}

func applyNodeStatus(txn *memdb.Txn, index uint64, c *NodeStatus) (any, error) {
	old := getNode(txn, c.NodeID)
	if old == nil {
		return nil, fmt.Errorf("node %s: %w", c.NodeID, ErrNotFound)
	}
	if old.Status == c.Status {
		return old, nil
	}
	n := *old
	n.Status, n.StatusAt, n.ModifyIndex = c.Status, c.At, index
	if n.Status == api.NodeReady {
		n.RestartingUntil = time.Time{} // back from its restart (restart.go)
	}
	mustInsert(txn, tableNodes, &n)
	return &n, nil
}

func applyNodeStatuses(txn *memdb.Txn, index uint64, c *NodeStatuses) (any, error) {
	changed := 0
	for i := range c.Statuses {
		st := &c.Statuses[i]
		old := getNode(txn, st.NodeID)
		if old == nil || old.Status == st.Status {
			continue // removed since the leader looked, or already so
		}
		if _, err := applyNodeStatus(txn, index, st); err != nil {
			return nil, err
		}
		changed++
	}
	return changed, nil
}

func applyNodeUpdate(txn *memdb.Txn, index uint64, c *NodeUpdate) (any, error) {
	old := getNode(txn, c.NodeID)
	if old == nil {
		return nil, fmt.Errorf("node %s: %w", c.NodeID, ErrNotFound)
	}
	n := *old
	switch c.Availability {
	case "":
	case api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
		n.Availability = c.Availability
	default:
		return nil, fmt.Errorf("availability %q: %w", c.Availability, ErrInvalid)
	}
	switch c.Role {
	case "":
	case api.RoleManager, api.RoleWorker:
		n.Role = c.Role
	default:
		return nil, fmt.Errorf("role %q: %w", c.Role, ErrInvalid)
	}
	if len(c.LabelAdd) > 0 || len(c.LabelRm) > 0 {
		n.Labels = maps.Clone(n.Labels)
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		maps.Copy(n.Labels, c.LabelAdd)
		for _, k := range c.LabelRm {
			delete(n.Labels, k)
		}
	}
	n.ModifyIndex = index
	mustInsert(txn, tableNodes, &n)
	return &n, nil
}

func applyNodeRemove(txn *memdb.Txn, index uint64, c *NodeRemove) (any, error) {
	old := getNode(txn, c.NodeID)
	if old == nil {
		return nil, fmt.Errorf("node %s: %w", c.NodeID, ErrNotFound)
	}
	if old.Status != api.NodeDown && !c.Force {
		return nil, fmt.Errorf("node %s is %s, not down: stop it first or use --force: %w", c.NodeID, old.Status, ErrInvalid)
	}
	if err := txn.Delete(tableNodes, old); err != nil {
		return nil, fmt.Errorf("delete node: %w", err)
	}
	// Its tasks can never report again: mark them orphaned so the orchestrator replaces them.
	it, _ := txn.Get(tableTasks, "node", c.NodeID)
	var tasks []*api.Task
	for raw := it.Next(); raw != nil; raw = it.Next() {
		tasks = append(tasks, raw.(*api.Task))
	}
	for _, t := range tasks {
		if t.Status.State.Terminal() {
			continue
		}
		nt := *t
		nt.Status.State, nt.Status.Message = api.TaskOrphaned, "node removed"
		nt.DesiredState = max(nt.DesiredState, api.TaskShutdown)
		nt.ModifyIndex = index
		mustInsert(txn, tableTasks, &nt)
	}
	return old, nil
}

func getService(txn *memdb.Txn, name string) *api.Service {
	if raw, _ := txn.First(tableServices, "name", name); raw != nil {
		return raw.(*serviceRow).S
	}
	if raw, _ := txn.First(tableServices, "id", name); raw != nil {
		return raw.(*serviceRow).S
	}
	return nil
}

func putService(txn *memdb.Txn, s *api.Service) {
	mustInsert(txn, tableServices, &serviceRow{ID: s.ID, Name: s.Spec.Name, S: s})
}

func applyServiceCreate(txn *memdb.Txn, index uint64, c *ServiceCreate) (any, error) {
	spec := c.Spec.Clone()
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if getService(txn, spec.Name) != nil {
		return nil, fmt.Errorf("service %q: %w", spec.Name, ErrNameTaken)
	}
	if err := resolveRefs(txn, &spec); err != nil {
		return nil, err
	}
	cl := getCluster(txn)
	if cl == nil {
		return nil, ErrNotInitialized
	}
	svc := &api.Service{ID: c.ID, Spec: spec, SpecVersion: 1, CreatedAt: c.At, UpdatedAt: c.At,
		CreateIndex: index, ModifyIndex: index}
	if spec.Mode.IsJob() {
		svc.JobRun = 1 // the first run (api.Service.InJobRun)
	}
	if err := allocate(txn, cl, nil, svc); err != nil {
		return nil, err
	}
	putService(txn, svc)
	putRegistryAuth(txn, svc.ID, c.RegistryAuth)
	return svc, nil
}

// allocate gives a service its VIP and published ports, deterministically from the
// state: the lowest free address of the pool, the lowest free port of the range.
func allocate(txn *memdb.Txn, cl *Cluster, old, svc *api.Service) error {
	usedIP := map[string]bool{}
	usedPort := map[string]string{} // "port/proto" -> service name
	it, _ := txn.Get(tableServices, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*serviceRow).S
		if o.ID == svc.ID {
			continue
		}
		if o.VIP != "" {
			usedIP[o.VIP] = true
		}
		for _, p := range o.Ports {
			if p.PublishedPort != 0 && p.PublishMode == api.PublishIngress {
				usedPort[fmt.Sprintf("%d/%s", p.PublishedPort, p.Protocol)] = o.Spec.Name
			}
		}
	}
	svc.VIP = ""
	if svc.Spec.EndpointMode == api.EndpointVIP {
		if old != nil && old.VIP != "" {
			svc.VIP = old.VIP
		} else {
			vip, err := nextVIP(cl.ServiceRange, usedIP)
			if err != nil {
				return err
			}
			svc.VIP = vip
		}
	}
	svc.Ports = slices.Clone(svc.Spec.Ports)
	for i := range svc.Ports {
		p := &svc.Ports[i]
		if p.PublishMode != api.PublishIngress {
			continue
		}
		if p.PublishedPort != 0 {
			if other, ok := usedPort[fmt.Sprintf("%d/%s", p.PublishedPort, p.Protocol)]; ok {
				return fmt.Errorf("port %d/%s is already published by service %s: %w", p.PublishedPort, p.Protocol, other, ErrInvalid)
			}
			continue
		}
		if old != nil {
			for _, op := range old.Ports {
				if op.TargetPort == p.TargetPort && op.Protocol == p.Protocol && op.PublishMode == api.PublishIngress {
					p.PublishedPort = op.PublishedPort
				}
			}
			if p.PublishedPort != 0 {
				continue
			}
		}
		for port := cl.PortRange[0]; port <= cl.PortRange[1] && port > 0; port++ {
			k := fmt.Sprintf("%d/%s", port, p.Protocol)
			if _, ok := usedPort[k]; !ok {
				p.PublishedPort = port
				usedPort[k] = svc.Spec.Name
				break
			}
		}
		if p.PublishedPort == 0 {
			return fmt.Errorf("no free port in %d-%d: %w", cl.PortRange[0], cl.PortRange[1], ErrInvalid)
		}
	}
	return nil
}

func nextVIP(pool string, used map[string]bool) (string, error) {
	prefix, err := netip.ParsePrefix(pool)
	if err != nil {
		return "", fmt.Errorf("service range %q: %w", pool, ErrInvalid)
	}
	prefix = prefix.Masked()
	// Skip the network address; stop before the broadcast address.
	for a := prefix.Addr().Next(); prefix.Contains(a) && prefix.Contains(a.Next()); a = a.Next() {
		if !used[a.String()] {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("every VIP of the service range %s is taken: remove a service, or use --endpoint-mode dnsrr: %w", pool, ErrInvalid)
}

func applyServiceUpdate(txn *memdb.Txn, index uint64, c *ServiceUpdate) (any, error) {
	old := getService(txn, c.Name)
	if old == nil {
		return nil, fmt.Errorf("service %q: %w", c.Name, ErrNotFound)
	}
	if c.ExpectedVersion != 0 && c.ExpectedVersion != old.SpecVersion {
		return nil, fmt.Errorf("service %q is at version %d, not %d: %w", c.Name, old.SpecVersion, c.ExpectedVersion, ErrVersionConflict)
	}
	spec := c.Spec.Clone()
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := resolveRefs(txn, &spec); err != nil {
		return nil, err
	}
	// The old spec is kept for a rollback; an update starts if tasks must change.
	svc, err := old.WithSpec(spec, c.At)
	if err != nil {
		return nil, err
	}
	svc.ModifyIndex = index
	if err := allocate(txn, getCluster(txn), old, svc); err != nil {
		return nil, err
	}
	putService(txn, svc)
	putRegistryAuth(txn, svc.ID, c.RegistryAuth)
	return svc, nil
}

func applyServiceRollback(txn *memdb.Txn, index uint64, c *ServiceRollback) (any, error) {
	old := getService(txn, c.Name)
	if old == nil {
		return nil, fmt.Errorf("service %q: %w", c.Name, ErrNotFound)
	}
	if c.ExpectedVersion != 0 && c.ExpectedVersion != old.SpecVersion {
		return nil, fmt.Errorf("service %q is at version %d, not %d: %w", c.Name, old.SpecVersion, c.ExpectedVersion, ErrVersionConflict)
	}
	svc, err := old.RolledBack(c.At, c.Message)
	if err != nil {
		return nil, err
	}
	if err := resolveRefs(txn, &svc.Spec); err != nil {
		return nil, fmt.Errorf("roll back service %q: %w", c.Name, err)
	}
	svc.ModifyIndex = index
	// The previous spec may publish ports another service took meanwhile.
	if err := allocate(txn, getCluster(txn), old, svc); err != nil {
		return nil, err
	}
	putService(txn, svc)
	return svc, nil
}

func applyServiceUpdateStatus(txn *memdb.Txn, index uint64, c *ServiceUpdateStatus) (any, error) {
	var old *api.Service
	if raw, _ := txn.First(tableServices, "id", c.ServiceID); raw != nil {
		old = raw.(*serviceRow).S
	}
	svc, err := api.ApplyUpdateOp(old, api.UpdateOp{Kind: api.UpdateOpStatus, ServiceID: c.ServiceID, SpecVersion: c.SpecVersion, Status: c.Status})
	if err != nil {
		return nil, err
	}
	svc.ModifyIndex = index
	putService(txn, svc)
	return svc, nil
}

func applyServiceScale(txn *memdb.Txn, index uint64, c *ServiceScale) (any, error) {
	old := getService(txn, c.Name)
	if old == nil {
		return nil, fmt.Errorf("service %q: %w", c.Name, ErrNotFound)
	}
	if old.Spec.Mode != api.ModeReplicated && old.Spec.Mode != api.ModeReplicatedJob {
		return nil, fmt.Errorf("service %q is %s and cannot be scaled: %w", c.Name, old.Spec.Mode, ErrInvalid)
	}
	if c.Replicas > api.MaxReplicas {
		return nil, fmt.Errorf("replicas %d: at most %d: %w", c.Replicas, api.MaxReplicas, ErrInvalid)
	}
	svc := *old
	// Scaling changes how many tasks run, not what they run: the spec version stays,
	// so running tasks are not replaced (and a replicated job's run goes on: the
	// slots added run, the completions made stay; api.Service.InJobRun).
	svc.Spec.Replicas, svc.UpdatedAt, svc.ModifyIndex = c.Replicas, c.At, index
	putService(txn, &svc)
	return &svc, nil
}

func applyServiceRemove(txn *memdb.Txn, index uint64, c *ServiceRemove) (any, error) {
	old := getService(txn, c.Name)
	if old == nil {
		return nil, fmt.Errorf("service %q: %w", c.Name, ErrNotFound)
	}
	if err := txn.Delete(tableServices, &serviceRow{ID: old.ID, Name: old.Spec.Name, S: old}); err != nil {
		return nil, fmt.Errorf("delete service: %w", err)
	}
	deleteRegistryAuth(txn, old.ID)
	it, _ := txn.Get(tableTasks, "service", old.ID)
	var tasks []*api.Task
	for raw := it.Next(); raw != nil; raw = it.Next() {
		tasks = append(tasks, raw.(*api.Task))
	}
	for _, t := range tasks {
		if t.DesiredState >= api.TaskShutdown {
			continue
		}
		nt := *t
		nt.DesiredState, nt.ModifyIndex = api.TaskShutdown, index
		mustInsert(txn, tableTasks, &nt)
	}
	return old, nil
}

// shareSpec points a new task's spec at its service's when they are equal, as
// they are for every task the orchestrator creates: each decoded entry holds a
// copy of the spec per task, and a thousand tasks of one service would keep a
// thousand. Equal values, so the state is the same either way.
func shareSpec(txn *memdb.Txn, t *api.Task) {
	raw, _ := txn.First(tableServices, "id", t.ServiceID)
	if raw == nil {
		return
	}
	if svc := raw.(*serviceRow).S; svc.SpecVersion == t.SpecVersion && reflect.DeepEqual(svc.Spec, t.Spec) {
		t.Spec = svc.Spec
	}
}

// applyTaskOps applies a batch. Ops naming tasks that no longer exist are skipped,
// not refused: a worker's report may race with the deletion of old history.
func applyTaskOps(txn *memdb.Txn, index uint64, c *TaskOps) (any, error) {
	applied := 0
	for _, op := range c.Ops {
		id := op.TaskID
		if op.Kind == api.TaskOpCreate && op.Task != nil {
			id = op.Task.ID
		}
		var cur *api.Task
		if raw, _ := txn.First(tableTasks, "id", id); raw != nil {
			cur = raw.(*api.Task)
		}
		next, res, err := api.ApplyTaskOp(cur, op, index)
		if err != nil {
			return nil, err
		}
		if res == api.OpChanged && cur == nil {
			shareSpec(txn, next)
		}
		switch res {
		case api.OpChanged:
			mustInsert(txn, tableTasks, next)
			applied++
		case api.OpDeleted:
			if err := txn.Delete(tableTasks, cur); err != nil {
				return nil, fmt.Errorf("delete task: %w", err)
			}
			applied++
		}
	}
	return applied, nil
}
