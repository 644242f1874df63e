package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/forward"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Encryption at rest on a manager: the Raft data key (DEK) in DATA_DIR/raft, wrapped
// by a key beside it or, with autolock, by the cluster's unlock key, which the
// operator gives after each restart (node/pki/DESIGN.md, "Encryption at rest").

// createDataKey makes a fresh data key for an empty Raft dir.
func (d *Daemon) createDataKey(unlockKey string) error {
	if err := os.MkdirAll(d.raftDir(), 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	kf, dek, err := raftstore.CreateKeyFile(d.raftDir(), unlockKey)
	if err != nil {
		return err
	}
	d.setDataKey(kf, &dek, unlockKey)
	return nil
}

func (d *Daemon) setDataKey(kf *raftstore.KeyFile, dek *raftstore.DataKey, wrappedWith string) {
	d.mu.Lock()
	d.keyFile, d.dek, d.wrappedWith = kf, dek, wrappedWith
	d.mu.Unlock()
}

// currentDEK is this manager's data key; nil on a worker.
func (d *Daemon) currentDEK() *raftstore.DataKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dek
}

// resealSecrets writes the node key and the gossip keys again, sealed with the data
// key if this node has one (a promotion) or plain (a demotion).
func (d *Daemon) resealSecrets() {
	if d.trust != nil {
		if err := d.trust.resave(d.cfg.DataDir); err != nil {
			d.log.Error("save the node key", "err", err)
		}
	}
	d.mu.Lock()
	keys := d.gossipKeys
	d.mu.Unlock()
	if len(keys) > 0 {
		if err := saveGossipKeys(d.cfg.DataDir, keys, d.currentDEK()); err != nil {
			d.log.Error("save gossip keys", "err", err)
		}
	}
}

// openDataKey reads a resumed manager's data key; with autolock it waits for the
// operator's 'swarmlet unlock' on the socket.
func (d *Daemon) openDataKey(ctx context.Context) error {
	kf, err := raftstore.LoadKeyFile(d.raftDir())
	if errors.Is(err, raftstore.ErrNoKeyFile) {
		if _, serr := os.Stat(filepath.Join(d.raftDir(), "raft.db")); serr == nil {
			return fmt.Errorf("%s holds Raft data without a data key (written by a build without encryption at rest): stop the node, empty %s and join the cluster again", d.raftDir(), d.cfg.DataDir)
		}
		return d.createDataKey("")
	}
	if err != nil {
		return err
	}
	if !kf.Autolock() {
		dek, err := kf.DataKey()
		if err != nil {
			return fmt.Errorf("open raft data key: %w", err)
		}
		d.setDataKey(kf, &dek, "")
		return nil
	}
	dek, key, err := d.waitUnlock(ctx, kf)
	if err != nil {
		return err
	}
	d.setDataKey(kf, &dek, key)
	return nil
}

// waitUnlock serves the socket with only what a locked manager can answer (info,
// unlock) until the operator gives the right key. Nothing else runs meanwhile: no
// Raft, no gossip, no TCP API.
func (d *Daemon) waitUnlock(ctx context.Context, kf *raftstore.KeyFile) (raftstore.DataKey, string, error) {
	type unlocked struct {
		dek raftstore.DataKey
		key string
	}
	sock := d.cfg.socketPath()
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return raftstore.DataKey{}, "", fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return raftstore.DataKey{}, "", fmt.Errorf("chmod %s: %w", sock, err)
	}
	done := make(chan unlocked, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/unlock", func(w http.ResponseWriter, r *http.Request) {
		var req api.UnlockRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			forward.WriteError(w, fmt.Errorf("decode request: %v: %w", err, api.ErrInvalid))
			return
		}
		dek, err := kf.Unlock(req.Key)
		if err != nil {
			d.log.Warn("unlock refused", "err", err)
			forward.WriteError(w, fmt.Errorf("%w: %w", err, api.ErrInvalid))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}\n")
		select {
		case done <- unlocked{dek, req.Key}:
		default:
		}
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.Info{NodeID: d.id.NodeID, Hostname: d.cfg.Hostname, Addr: d.cfg.AdvertiseAddr,
			Role: d.id.Role, ClusterID: d.id.ClusterID, DataDir: d.cfg.DataDir, Version: Version, Locked: true})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		forward.WriteError(w, fmt.Errorf("this manager is locked (autolock): give it the cluster's unlock key with 'swarmlet unlock': %w", api.ErrNotLeader))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		_ = os.Remove(sock)
	}()
	d.log.Warn("this manager is locked (autolock): waiting for 'swarmlet unlock'", "socket", sock)
	d.cfg.Out("This manager is locked (autolock): give it the cluster's unlock key with 'swarmlet unlock'.\n")
	select {
	case u := <-done:
		d.log.Info("unlocked")
		return u.dek, u.key, nil
	case <-ctx.Done():
		return raftstore.DataKey{}, "", fmt.Errorf("stopped while locked: %w", ctx.Err())
	}
}

// followUnlockKey wraps this manager's data key again when the cluster's unlock key
// changes (unlock-key --rotate), or when a new manager learns that autolock is on.
func (d *Daemon) followUnlockKey(key string) {
	d.mu.Lock()
	kf, cur := d.keyFile, d.wrappedWith
	d.mu.Unlock()
	if kf == nil || key == cur {
		return
	}
	if err := kf.RotateUnlockKey(key); err != nil {
		d.log.Error("wrap the raft data key with the new unlock key", "err", err)
		return
	}
	d.mu.Lock()
	d.wrappedWith = key
	d.mu.Unlock()
	d.log.Info("raft data key wrapped again", "autolock", key != "")
}
