package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/forward"
	"github.com/swarmlet/swarmlet/node/token"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Secrets and configs (/v1/secrets, /v1/configs): one set of handlers for both
// kinds. No answer carries a secret's value: the store's reads leave it out,
// and the one way to it is the dispatcher's session. Each write is checked here
// and again where the FSM applies it.

func (s *Server) secretRoutes(h func(string, forward.Kind, access, forward.Handler)) {
	for _, kind := range []api.SecretKind{api.KindSecret, api.KindConfig} {
		base := "/v1/" + string(kind) + "s"
		h("GET "+base, forward.Read, admin, s.handleSecrets(kind))
		h("POST "+base, forward.Write, admin, s.handleSecretCreate(kind))
		h("GET "+base+"/{name}", forward.Read, admin, s.handleSecret(kind))
		h("POST "+base+"/{name}/update", forward.Write, admin, s.handleSecretUpdate(kind))
		h("DELETE "+base+"/{name}", forward.Write, admin, s.handleSecretRemove(kind))
	}
}

func (s *Server) handleSecrets(kind api.SecretKind) forward.Handler {
	return func(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
		snap := blockingSnapshot(r, st)
		out := []api.Secret{}
		for _, sec := range snap.Secrets(kind) {
			out = append(out, withUsers(snap, sec))
		}
		writeJSON(w, snap.Index(), out)
	}
}

func (s *Server) handleSecret(kind api.SecretKind) forward.Handler {
	return func(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
		snap := st.Snapshot()
		sec, err := findSecret(snap, kind, r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, snap.Index(), withUsers(snap, sec))
	}
}

func (s *Server) handleSecretCreate(kind api.SecretKind) forward.Handler {
	return func(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
		var req api.SecretCreateRequest
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		for _, err := range []error{api.ValidateSecretName(kind, req.Name), api.ValidateSecretData(kind, req.Data), api.ValidateSecretLabels(req.Labels)} {
			if err != nil {
				writeError(w, badRequest("%v", err))
				return
			}
		}
		res, err := apply(r, st, &raftstore.SecretCreate{ID: token.RandomID(25), Kind: kind, Name: req.Name, Data: req.Data, Labels: req.Labels, At: time.Now().UTC()})
		if err != nil {
			writeError(w, err)
			return
		}
		s.log.Info(string(kind)+" created", "name", req.Name)
		writeJSON(w, st.State().Index(), res)
	}
}

func (s *Server) handleSecretUpdate(kind api.SecretKind) forward.Handler {
	return func(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
		var req api.SecretUpdateRequest
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		if err := api.ValidateSecretData(kind, req.Data); err != nil {
			writeError(w, badRequest("%v", err))
			return
		}
		sec, err := findSecret(st.Snapshot(), kind, r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		res, err := apply(r, st, &raftstore.SecretUpdate{Kind: kind, Name: sec.Name, Data: req.Data, At: time.Now().UTC()})
		if err != nil {
			writeError(w, err)
			return
		}
		up := res.(*raftstore.SecretUpdated)
		out := api.SecretUpdateAnswer{Secret: *up.Secret}
		for _, svc := range up.Services {
			out.Services = append(out.Services, svc.Spec.Name)
		}
		sort.Strings(out.Services)
		s.log.Info(string(kind)+" updated", "name", sec.Name, "version", up.Secret.Version, "services", len(out.Services))
		writeJSON(w, st.State().Index(), out)
	}
}

func (s *Server) handleSecretRemove(kind api.SecretKind) forward.Handler {
	return func(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
		sec, err := findSecret(st.Snapshot(), kind, r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		res, err := apply(r, st, &raftstore.SecretRemove{Kind: kind, Name: sec.Name, At: time.Now().UTC()})
		if err != nil {
			writeError(w, err)
			return
		}
		s.log.Info(string(kind)+" removed", "name", sec.Name)
		writeJSON(w, st.State().Index(), res)
	}
}

// findSecret resolves a name, ID or unique ID prefix.
func findSecret(snap *raftstore.Snapshot, kind api.SecretKind, ref string) (*api.Secret, error) {
	if err := checkRef(string(kind), ref); err != nil {
		return nil, err
	}
	if sec := snap.Secret(kind, ref); sec != nil {
		return sec, nil
	}
	var found []*api.Secret
	for _, sec := range snap.Secrets(kind) {
		if len(ref) >= 3 && len(sec.ID) > len(ref) && sec.ID[:len(ref)] == ref {
			found = append(found, sec)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("%s %q: %w", kind, ref, api.ErrNotFound)
	default:
		return nil, badRequest("%s %q is ambiguous (%d match): use the name", kind, ref, len(found))
	}
}

// withUsers adds the services whose spec uses sec.
func withUsers(snap *raftstore.Snapshot, sec *api.Secret) api.Secret {
	out := *sec
	for _, svc := range snap.Services() {
		refs := svc.Spec.Secrets
		if sec.Kind == api.KindConfig {
			refs = svc.Spec.Configs
		}
		if slices.ContainsFunc(refs, func(r api.SecretRef) bool { return r.ID == sec.ID }) {
			out.UsedBy = append(out.UsedBy, svc.Spec.Name)
		}
	}
	sort.Strings(out.UsedBy)
	return out
}

// checkFileRefs refuses, before anything is proposed, a spec naming a secret or
// config that is not stored (the FSM checks again where it applies the spec).
func checkFileRefs(snap *raftstore.Snapshot, spec *api.ServiceSpec) error {
	for _, l := range []struct {
		kind api.SecretKind
		refs []api.SecretRef
	}{{api.KindSecret, spec.Secrets}, {api.KindConfig, spec.Configs}} {
		for _, r := range l.refs {
			if snap.Secret(l.kind, r.Source) == nil {
				return fmt.Errorf("%s %q not found: create it first with 'swarmlet %s create %s FILE': %w", l.kind, r.Source, l.kind, r.Source, api.ErrNotFound)
			}
		}
	}
	return nil
}
