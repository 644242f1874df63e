package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// record is the list of images this node brought onto its engine (pulled or
// loaded from another node), kept in the data dir: prune only ever removes those,
// never an image the operator built or pulled by hand.
type record struct {
	path string
	mu   sync.Mutex
}

func (r *record) load() ([]string, error) {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.path, err)
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, fmt.Errorf("read %s: %w", r.path, err)
	}
	return ids, nil
}

func (r *record) save(ids []string) error {
	b, _ := json.Marshal(ids)
	tmp := r.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.path)
}

func (r *record) list() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.load()
}

func (r *record) add(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids, err := r.load()
	if err != nil {
		return err
	}
	if slices.Contains(ids, id) {
		return nil
	}
	return r.save(append(ids, id))
}

func (r *record) remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids, err := r.load()
	if err != nil {
		return err
	}
	return r.save(slices.DeleteFunc(ids, func(s string) bool { return s == id }))
}
