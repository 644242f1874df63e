package httpapi

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/node/token"
	"github.com/swarmlet/swarmlet/raftstore"
)

// The trust endpoints: join, join tokens, certificates, the CA and the unlock key.
// Every one of them runs on the leader (or reads its state), which holds the CA key
// in its FSM like every manager.

// clusterCA is the cluster record and its CA.
func clusterCA(snap *raftstore.Snapshot) (*raftstore.Cluster, *pki.CA, error) {
	cl := snap.Cluster()
	if cl == nil {
		return nil, nil, raftstore.ErrNotInitialized
	}
	ca, err := pki.LoadCA(cl.Trust.CACert, cl.Trust.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("the cluster's CA in the store: %w", err)
	}
	return cl, ca, nil
}

// RootID names a signing root in node records: a rotation is done when every node's
// certificate names the current one.
func RootID(ca *pki.CA) string { return pki.RootDigest(ca.Cert) }

// JoinTokens derives the current tokens from the CA key and the generations, and
// checks them against the hashes stored: no token is kept anywhere.
func JoinTokens(cl *raftstore.Cluster, ca *pki.CA) (api.JoinTokens, error) {
	var out api.JoinTokens
	for _, role := range []api.NodeRole{api.RoleWorker, api.RoleManager} {
		stored := cl.Trust.Token(role)
		secret, err := pki.DeriveSecret(ca.Key, role, stored.Generation)
		if err != nil {
			return out, err
		}
		tok := pki.NewToken(ca.Bundle().Anchor(), secret)
		if !tok.MatchesHash(stored.Hash) {
			return out, fmt.Errorf("the %s join token does not match its stored hash (CA changed without new tokens?)", role)
		}
		if role == api.RoleWorker {
			out.Worker = tok.String()
		} else {
			out.Manager = tok.String()
		}
	}
	return out, nil
}

// TokenHash is what the FSM keeps for role's token at generation under ca.
func TokenHash(ca *pki.CA, role api.NodeRole, generation uint64) (string, error) {
	secret, err := pki.DeriveSecret(ca.Key, role, generation)
	if err != nil {
		return "", err
	}
	return pki.HashSecret(secret), nil
}

func (s *Server) handleJoinTokens(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	cl, ca, err := clusterCA(snap)
	if err != nil {
		writeError(w, err)
		return
	}
	toks, err := JoinTokens(cl, ca)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, snap.Index(), toks)
}

// handleRotate moves a role's token to its next generation: the old one is refused
// from the moment the entry commits.
func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	role := api.NodeRole(r.URL.Query().Get("role"))
	if role != api.RoleWorker && role != api.RoleManager {
		writeError(w, badRequest("role must be worker or manager"))
		return
	}
	cl, ca, err := clusterCA(st.Snapshot())
	if err != nil {
		writeError(w, err)
		return
	}
	gen := cl.Trust.Token(role).Generation + 1
	hash, err := TokenHash(ca, role, gen)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := apply(r, st, &raftstore.TokenRotate{Role: role, Generation: gen, Hash: hash}); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("join token rotated", "role", role, "generation", gen)
	s.handleJoinTokens(w, r, st)
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	cl, ca, err := clusterCA(st.Snapshot())
	if err != nil {
		writeError(w, err)
		return
	}
	tok, err := pki.ParseToken(req.Token)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if tok.CADigest != pki.RootDigest(ca.Bundle().Anchor()) {
		writeError(w, badRequest("the join token is for another cluster (or from before a CA rotation): get a current one with 'swarmlet join-token worker|manager'"))
		return
	}
	var role api.NodeRole
	switch {
	case tok.MatchesHash(cl.Trust.WorkerToken.Hash):
		role = api.RoleWorker
	case tok.MatchesHash(cl.Trust.ManagerToken.Hash):
		role = api.RoleManager
	default:
		writeError(w, badRequest("invalid join token (wrong or rotated): get a current one with 'swarmlet join-token worker|manager'"))
		return
	}
	n := req.Node
	if err := checkSelf(n); err != nil {
		writeError(w, err)
		return
	}
	// The manager names the node: a removed node's ID is never handed out again,
	// so its old certificate can never match a member.
	n.ID = token.RandomID(12)
	chain, err := ca.IssueNode(req.CSR, pki.NodeRequest{NodeID: n.ID, Role: role, Addrs: []string{n.Addr}, Expiry: cl.Trust.CertExpiry})
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	n.Role, n.Status, n.StatusAt = role, api.NodeReady, time.Now().UTC()
	n.CertIssuer, n.CertExpiry = RootID(ca), chain.Leaf().NotAfter.UTC()
	// Labels are the operator's; the availability a node asks for at join
	// (join --availability) is kept, as Docker keeps it.
	n.Labels = nil
	switch n.Availability {
	case api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
	default:
		n.Availability = ""
	}
	if _, err := apply(r, st, &raftstore.NodeUpsert{Node: n}); err != nil {
		writeError(w, err)
		return
	}
	snap := st.Snapshot()
	resp := api.JoinResponse{NodeID: n.ID, ClusterID: cl.ID, Role: role, Network: cl.Network(), Certificate: string(chain.PEM()),
		CA: string(ca.Bundle().PEM()), GossipKeys: cl.Trust.GossipKeys}
	for _, m := range snap.Nodes() {
		if m.Role == api.RoleManager {
			resp.Managers = append(resp.Managers, *m)
		}
	}
	s.log.Info("node joined", "target", n.ID, "role", role, "addr", n.Addr)
	writeJSON(w, snap.Index(), resp)
}

// handleRenew issues the caller a new certificate for the key of its request, with
// the role the node table gives it now (so a promotion or a demotion takes effect)
// and from the current root (so a CA rotation moves every node over).
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	nodeID, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req api.CertificateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	snap := st.Snapshot()
	n := snap.Node(nodeID)
	if n == nil {
		writeError(w, fmt.Errorf("node %s is not part of the cluster (removed?): %w", nodeID, api.ErrNotFound))
		return
	}
	cl, ca, err := clusterCA(snap)
	if err != nil {
		writeError(w, err)
		return
	}
	chain, err := ca.IssueNode(req.CSR, pki.NodeRequest{NodeID: n.ID, Role: n.Role, Addrs: []string{n.Addr}, Expiry: cl.Trust.CertExpiry})
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if _, err := apply(r, st, &raftstore.NodeCert{NodeID: n.ID, Issuer: RootID(ca), Expiry: chain.Leaf().NotAfter.UTC()}); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("certificate issued", "target", n.ID, "role", n.Role, "expires", chain.Leaf().NotAfter)
	writeJSON(w, st.State().Index(), api.CertificateResponse{Certificate: string(chain.PEM()), CA: string(ca.Bundle().PEM())})
}

// handleIssueClient signs an operator's client certificate (swarmlet ca
// issue-client): client authentication only, it can never serve.
func (s *Server) handleIssueClient(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.CertificateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Name == "" {
		req.Name = "operator"
	}
	cl, ca, err := clusterCA(st.Snapshot())
	if err != nil {
		writeError(w, err)
		return
	}
	chain, err := ca.IssueClient(req.CSR, req.Name, cl.Trust.CertExpiry, time.Time{})
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	s.log.Info("operator certificate issued", "name", req.Name, "expires", chain.Leaf().NotAfter)
	writeJSON(w, 0, api.CertificateResponse{Certificate: string(chain.PEM()), CA: string(ca.Bundle().PEM())})
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	info, err := CAInfoOf(snap)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, snap.Index(), info)
}

// CAInfoOf describes the CA and how far a rotation has come.
func CAInfoOf(snap *raftstore.Snapshot) (api.CAInfo, error) {
	cl, ca, err := clusterCA(snap)
	if err != nil {
		return api.CAInfo{}, err
	}
	b := ca.Bundle()
	info := api.CAInfo{CA: string(b.PEM()), Digest: pki.RootDigest(b.Anchor()), Rotating: ca.Previous != nil,
		CertExpiry: cl.Trust.CertExpiry.String()}
	for _, n := range snap.Nodes() {
		if n.CertIssuer != RootID(ca) {
			info.Pending = append(info.Pending, n.ID)
		}
	}
	return info, nil
}

// handleCARotate starts a CA rotation: a new root cross-signed by the old one. The
// leader finishes it once every node holds a certificate of the new root.
func (s *Server) handleCARotate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	cl, ca, err := clusterCA(st.Snapshot())
	if err != nil {
		writeError(w, err)
		return
	}
	if ca.Previous != nil {
		writeError(w, fmt.Errorf("a CA rotation is already under way (see 'swarmlet ca'): %w", api.ErrConflict))
		return
	}
	next, err := ca.StartRotation(time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	upd, err := CAUpdateTo(cl, next)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := apply(r, st, upd); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("CA rotation started", "root", pki.RootDigest(next.Cert))
	s.handleCA(w, r, st)
}

// CAUpdateTo is the command that replaces cl's CA with next, join-token hashes
// included (the secrets derive from the CA key).
func CAUpdateTo(cl *raftstore.Cluster, next *pki.CA) (*raftstore.CAUpdate, error) {
	certPEM, keyPEM, err := next.MarshalPEM()
	if err != nil {
		return nil, err
	}
	wh, err := TokenHash(next, api.RoleWorker, cl.Trust.WorkerToken.Generation)
	if err != nil {
		return nil, err
	}
	mh, err := TokenHash(next, api.RoleManager, cl.Trust.ManagerToken.Generation)
	if err != nil {
		return nil, err
	}
	return &raftstore.CAUpdate{Prev: cl.Trust.CACert, CACert: certPEM, CAKey: keyPEM, WorkerHash: wh, ManagerHash: mh}, nil
}

func (s *Server) handleUnlockKey(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	cl := snap.Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	writeJSON(w, snap.Index(), api.UnlockKey{Key: cl.Trust.UnlockKey})
}

// handleUnlockKeyRotate replaces the unlock key; every manager wraps its data key
// with the new one, and the old key stops opening any data dir.
func (s *Server) handleUnlockKeyRotate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	cl := st.Snapshot().Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	if cl.Trust.UnlockKey == "" {
		writeError(w, badRequest("autolock is off in this cluster: there is no unlock key to rotate (it is turned on at 'swarmlet init --autolock')"))
		return
	}
	key, err := raftstore.NewUnlockKey()
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := apply(r, st, &raftstore.UnlockKeySet{Key: key}); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("unlock key rotated")
	writeJSON(w, st.State().Index(), api.UnlockKey{Key: key})
}

func (s *Server) handleGossipKey(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	cl := snap.Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	writeJSON(w, snap.Index(), api.GossipKeyInfo{Keys: len(cl.Trust.GossipKeys), Phase: cl.Trust.GossipRotation.Phase})
}

// handleGossipRotate starts a gossip key rotation: the new key goes in as a
// secondary; the leader takes the next steps (GossipRotationStep).
func (s *Server) handleGossipRotate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	cl := st.Snapshot().Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	if cl.Trust.GossipRotation.Phase != 0 {
		writeError(w, fmt.Errorf("a gossip key rotation is under way: %w", api.ErrConflict))
		return
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		writeError(w, err)
		return
	}
	keys := append(append([][]byte{}, cl.Trust.GossipKeys[:1]...), key)
	if _, err := apply(r, st, &raftstore.GossipKeysSet{Keys: keys, Rotation: raftstore.GossipRotation{Phase: 1, At: time.Now().UTC()}}); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("gossip key rotation started")
	s.handleGossipKey(w, r, st)
}

// GossipStep is how long each step of a gossip key rotation lasts: every node takes
// a keyring change within a second (managers from their log, workers from their
// session), so a few seconds leave a wide margin. A node that was down meanwhile
// gets the current keyring through its session (mutual TLS, not gossip) when it
// comes back.
const GossipStep = 3 * time.Second

// GossipRotationStep is the leader's next step of a rotation under way at now, or
// nil when there is none to take yet.
func GossipRotationStep(cl *raftstore.Cluster, now time.Time) *raftstore.GossipKeysSet {
	rot, keys := cl.Trust.GossipRotation, cl.Trust.GossipKeys
	if rot.Phase == 0 || now.Sub(rot.At) < GossipStep || len(keys) < 2 {
		return nil
	}
	switch rot.Phase {
	case 1: // the new key seals, the old one still opens
		return &raftstore.GossipKeysSet{Keys: [][]byte{keys[len(keys)-1], keys[0]}, Rotation: raftstore.GossipRotation{Phase: 2, At: now.UTC()}}
	default: // the old key goes
		return &raftstore.GossipKeysSet{Keys: keys[:1]}
	}
}
