// Package taskfiles keeps the secret and config files of a node's tasks on an
// in-memory filesystem, where its engine shows them to the tasks.
package taskfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Dir is the node's directory of task files: a tmpfs (mode 0700) mounted on
// Root when the first task needs files and unmounted when the last one's files
// are gone, or when the node leaves; so a secret is never written to a disk,
// and a node that runs no task with secrets has nothing mounted. A daemon
// restart keeps it mounted: the tasks it adopts keep reading their files.
type Dir struct {
	root string
	log  *slog.Logger

	mu sync.Mutex
}

// New returns the directory at root; nothing is mounted yet.
func New(root string, log *slog.Logger) *Dir {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dir{root: root, log: log}
}

// Root is where the files are (engine.Config.FilesDir).
func (d *Dir) Root() string { return d.root }

func mountTmpfs(root string) error {
	return unix.Mount("swarmlet-taskfiles", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700")
}

// Write puts task t's files in place from the values of a session answer,
// replacing any it had. An error wrapping engine.ErrRejected means this node
// cannot keep files in memory at all.
func (d *Dir) Write(t *api.Task, as *api.Assignments) error {
	files := engine.TaskFiles(d.root, t)
	if len(files) == 0 {
		return nil
	}
	if err := api.ValidateID(t.ID); err != nil {
		return fmt.Errorf("task files: %v: %w", err, engine.ErrRejected) // the ID names a directory
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ensureMounted(); err != nil {
		return err
	}
	dir := engine.TaskFilesDir(d.root, t.ID)
	tmp := filepath.Join(d.root, "."+t.ID+".new")
	_ = os.RemoveAll(tmp)
	if err := d.writeAll(tmp, dir, files, as); err != nil {
		_ = os.RemoveAll(tmp)
		d.unmountIfEmpty()
		return err
	}
	// Whole or not at all: a task never starts on half its files.
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("task files: %w", err)
	}
	return nil
}

func (d *Dir) writeAll(tmp, dir string, files []engine.TaskFile, as *api.Assignments) error {
	values := map[api.SecretKind][]api.SecretValue{api.KindSecret: as.Secrets, api.KindConfig: as.Configs}
	for _, f := range files {
		var data []byte
		found := false
		for _, v := range values[f.Kind] {
			if v.ID == f.Ref.ID && v.Version == f.Ref.Version {
				data, found = v.Data, true
				break
			}
		}
		if !found {
			// The answer the task came with carried it; a newer one that no
			// longer does means the task is going away.
			return fmt.Errorf("%s %s (version %d) was not handed to this node", f.Kind, f.Ref.Source, f.Ref.Version)
		}
		rel, err := filepath.Rel(dir, f.Host)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("%s %s: target %q leaves the task's directory", f.Kind, f.Ref.Source, f.Ref.Target)
		}
		if err := writeFile(filepath.Join(tmp, rel), data, f.Ref); err != nil {
			return fmt.Errorf("%s %s: %w", f.Kind, f.Ref.Source, err)
		}
	}
	return nil
}

// writeFile writes one file with the reference's owner and mode. Directories
// on the way are 0755 so that the file's own mode decides who reads it; the
// tmpfs root (0700) keeps everyone else on the host out.
func writeFile(path string, data []byte, r api.SecretRef) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	mode := r.Mode
	if mode == 0 {
		mode = api.DefaultSecretMode
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	uid, gid := atoi(r.UID), atoi(r.GID)
	if uid != 0 || gid != 0 || os.Geteuid() == 0 {
		if err := os.Chown(path, uid, gid); err != nil {
			return fmt.Errorf("owner %d:%d: %w", uid, gid, err)
		}
	}
	return os.Chmod(path, mode.Perm()) // after the owner: chown clears set-id bits
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s) // validated numeric with the spec; "" is 0 (root)
	return n
}

// Remove drops a task's files.
func (d *Dir) Remove(taskID string) error {
	if api.ValidateID(taskID) != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	err := os.RemoveAll(engine.TaskFilesDir(d.root, taskID))
	d.unmountIfEmpty()
	return err
}

// Tasks lists the tasks that have files.
func (d *Dir) Tasks() ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ents, err := os.ReadDir(d.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && api.ValidateID(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Close removes every file and unmounts: the node left, its tasks are gone.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !isMount(d.root) {
		return nil
	}
	ents, _ := os.ReadDir(d.root)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(d.root, e.Name()))
	}
	return d.unmount()
}

func (d *Dir) ensureMounted() error {
	if isMount(d.root) {
		var fs unix.Statfs_t
		if err := unix.Statfs(d.root, &fs); err != nil || fs.Type != unix.TMPFS_MAGIC {
			return fmt.Errorf("task files: %s is a mount point but not an in-memory filesystem: refusing to write secrets there: %w", d.root, engine.ErrRejected)
		}
		return nil
	}
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return fmt.Errorf("task files: %w", err)
	}
	if err := mountTmpfs(d.root); err != nil {
		_ = os.Remove(d.root)
		return fmt.Errorf("keep secrets in memory: mount a tmpfs on %s: %v (the daemon must run as root): %w", d.root, err, engine.ErrRejected)
	}
	d.log.Info("mounted the in-memory filesystem for task secrets and configs", "dir", d.root)
	return nil
}

// unmountIfEmpty unmounts once no task has files left, so that nothing stays
// mounted on a node whose tasks no longer use secrets.
func (d *Dir) unmountIfEmpty() {
	if !isMount(d.root) {
		return
	}
	if ents, err := os.ReadDir(d.root); err != nil || len(ents) > 0 {
		return
	}
	if err := d.unmount(); err != nil {
		d.log.Warn("unmount task files", "dir", d.root, "err", err)
	}
}

func (d *Dir) unmount() error {
	// Detached: a file still open (a process task reading it) keeps its own
	// reference; nothing new finds it.
	if err := unix.Unmount(d.root, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", d.root, err)
	}
	d.log.Info("unmounted the in-memory filesystem for task files", "dir", d.root)
	return os.Remove(d.root)
}

// isMount reports whether path is a mount point: on another device than its
// parent directory.
func isMount(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
