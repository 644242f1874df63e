package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/node/token"
	"github.com/swarmlet/swarmlet/raftstore"
)

func (s *Server) handleServices(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := blockingSnapshot(r, st)
	out := []api.ServiceInfo{}
	for _, svc := range snap.Services() {
		out = append(out, serviceInfo(svc, snap.TasksByService(svc.ID)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	writeJSON(w, snap.Index(), out)
}

// serviceInfo adds live counts to the stored service. For a job they count its
// current run only (api.Service.InJobRun), with its completions; desired is
// Docker's: a replicated job's max-concurrent, a global job's tasks not yet
// completed.
func serviceInfo(s *api.Service, tasks []*api.Task) api.ServiceInfo {
	v := api.ServiceInfo{Service: *s}
	job := s.Spec.Mode.IsJob()
	for _, t := range tasks {
		if job && !s.InJobRun(t) {
			continue
		}
		if t.Status.State == api.TaskRunning && t.DesiredState == api.TaskRunning {
			v.Running++
		}
		if job && t.Status.State == api.TaskComplete {
			v.Completed++
		}
	}
	switch s.Spec.Mode {
	case api.ModeGlobal:
		for _, t := range tasks {
			if t.DesiredState == api.TaskRunning {
				v.Desired++
			}
		}
	case api.ModeGlobalJob:
		for _, t := range tasks {
			if s.InJobRun(t) && t.DesiredState == api.TaskRunning && t.Status.State != api.TaskComplete {
				v.Desired++
			}
		}
	case api.ModeReplicatedJob:
		v.Desired = s.Spec.Replicas
		if mc := s.Spec.MaxConcurrent; mc > 0 && mc < v.Desired {
			v.Desired = mc
		}
	default:
		v.Desired = s.Spec.Replicas
	}
	return v
}

// findService resolves a service name, ID or unique ID prefix.
func findService(snap *raftstore.Snapshot, ref string) (*api.Service, error) {
	if err := checkRef("service", ref); err != nil {
		return nil, err
	}
	if svc := snap.Service(ref); svc != nil {
		return svc, nil
	}
	var found []*api.Service
	for _, svc := range snap.Services() {
		if svc.ID == ref || (len(ref) >= 3 && len(svc.ID) > len(ref) && svc.ID[:len(ref)] == ref) {
			found = append(found, svc)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("service %q: %w", ref, api.ErrNotFound)
	default:
		return nil, badRequest("service %q is ambiguous (%d services match): use the name", ref, len(found))
	}
}

func (s *Server) handleService(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	svc, err := findService(snap, r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, snap.Index(), serviceInfo(svc, snap.TasksByService(svc.ID)))
}

func (s *Server) handleServiceCreate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var spec api.ServiceSpec
	if err := decodeBody(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if err := dispatcher.EngineRefusal(&spec, st.Snapshot().Nodes()); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if err := checkFileRefs(st.Snapshot(), &spec); err != nil {
		writeError(w, err)
		return
	}
	auth, warnings, err := s.pinImage(r, st, &spec, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := apply(r, st, &raftstore.ServiceCreate{ID: token.RandomID(12), Spec: spec, At: time.Now().UTC(), RegistryAuth: auth})
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("service created", "service", spec.Name)
	writeJSON(w, st.State().Index(), withWarnings(res, warnings))
}

// serviceName resolves the {name} of a write's path to the stored name, so writes
// take IDs and prefixes as reads do.
func serviceName(r *http.Request, st *raftstore.Store) (string, error) {
	svc, err := findService(st.Snapshot(), r.PathValue("name"))
	if err != nil {
		return "", err
	}
	return svc.Spec.Name, nil
}

func (s *Server) handleServiceScale(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Replicas > api.MaxReplicas {
		writeError(w, badRequest("replicas %d: at most %d", req.Replicas, api.MaxReplicas))
		return
	}
	name, err := serviceName(r, st)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := apply(r, st, &raftstore.ServiceScale{Name: name, Replicas: req.Replicas, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, st.State().Index(), res)
}

func (s *Server) handleServiceUpdate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.ServiceUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	name, err := serviceName(r, st)
	if err != nil {
		writeError(w, err)
		return
	}
	req.Spec.Normalize()
	if err := req.Spec.Validate(); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if err := dispatcher.EngineRefusal(&req.Spec, st.Snapshot().Nodes()); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if err := checkFileRefs(st.Snapshot(), &req.Spec); err != nil {
		writeError(w, err)
		return
	}
	auth, warnings, err := s.pinImage(r, st, &req.Spec, st.Snapshot().Service(name))
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := apply(r, st, &raftstore.ServiceUpdate{Name: name, ExpectedVersion: req.Version, Spec: req.Spec, At: time.Now().UTC(), RegistryAuth: auth})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, st.State().Index(), withWarnings(res, warnings))
}

// handleServiceRollback returns a service to its previous spec, rolled out with
// its rollback settings (service rollback, service update --rollback).
func (s *Server) handleServiceRollback(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.ServiceRollbackRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	name, err := serviceName(r, st)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := apply(r, st, &raftstore.ServiceRollback{Name: name, ExpectedVersion: req.Version, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("service rollback", "service", name)
	writeJSON(w, st.State().Index(), res)
}

func (s *Server) handleServiceRemove(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	name, err := serviceName(r, st)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := apply(r, st, &raftstore.ServiceRemove{Name: name, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, st.State().Index(), res)
}

func (s *Server) handleTasks(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := blockingSnapshot(r, st)
	svc, err := findService(snap, r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	tasks := snap.TasksByService(svc.ID)
	out := make([]*api.Task, 0, len(tasks))
	out = append(out, tasks...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		if out[i].Slot == 0 && out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		return out[i].CreateIndex > out[j].CreateIndex
	})
	writeJSON(w, snap.Index(), out)
}
