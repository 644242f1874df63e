package api

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Secrets and configs: values stored in Raft (raftstore/secrets.go) that tasks
// get as files. A secret's value is never part of an API answer but the session
// answer of a node running a task that uses it; a config's value is shown by
// inspect (base64, as docker's Spec.Data). Each update makes a new version; the
// services that use it move to it with their update settings.

// SecretKind tells secrets from configs: one table, one set of commands.
type SecretKind string

const (
	KindSecret SecretKind = "secret"
	KindConfig SecretKind = "config"
)

// Valid reports whether k is one of the two kinds.
func (k SecretKind) Valid() bool { return k == KindSecret || k == KindConfig }

// MaxSecretSize bounds a secret's or config's value (docker's 500 KB): each
// version is copied into the Raft log, every manager's memory and the session
// answers of the nodes that use it.
const MaxSecretSize = 500 * 1024

// SecretsRoot is where docker engine tasks see secrets with a relative target.
const SecretsRoot = "/run/secrets"

// Docker's rule for secret and config names.
var secretNameRE = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)

// ValidateSecretName checks a secret's or config's name.
func ValidateSecretName(kind SecretKind, name string) error {
	if len(name) > 64 || !secretNameRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %.80q: use 1-64 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// ValidateSecretData checks a value's size.
func ValidateSecretData(kind SecretKind, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%s data is empty: give a file or - for standard input with at least one byte", kind)
	}
	if len(data) > MaxSecretSize {
		return fmt.Errorf("%s data is %d bytes, at most %d (500 KB)", kind, len(data), MaxSecretSize)
	}
	return nil
}

// ValidateSecretLabels bounds a secret's labels as a service's are.
func ValidateSecretLabels(labels map[string]string) error {
	if len(labels) > maxListItems {
		return fmt.Errorf("too many labels: %d, at most %d", len(labels), maxListItems)
	}
	for k, v := range labels {
		if k == "" {
			return errors.New("a label needs a key")
		}
		if len(k)+len(v) > maxFieldBytes {
			return fmt.Errorf("label %.40q is too long: at most %d bytes", k, maxFieldBytes)
		}
	}
	return nil
}

// Secret is a stored secret or config as the API shows it. Data is only ever set
// for a config; a secret's value leaves the managers only in a session answer.
type Secret struct {
	ID      string            `json:"id"`
	Kind    SecretKind        `json:"kind"`
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels,omitempty"`
	Version uint64            `json:"version"` // 1 at create, one more per update
	// Data is a config's current value (base64 in JSON); never a secret's.
	Data        []byte    `json:"data,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
	// UsedBy names the services whose spec uses it (filled by the API).
	UsedBy []string `json:"used_by,omitempty"`
}

// SecretCreateRequest stores a new secret or config.
type SecretCreateRequest struct {
	Name   string            `json:"name"`
	Data   []byte            `json:"data"`
	Labels map[string]string `json:"labels,omitempty"`
}

// SecretUpdateRequest gives a secret or config a new value (a new version).
type SecretUpdateRequest struct {
	Data []byte `json:"data"`
}

// SecretUpdateAnswer is the new version and the services that now roll to it.
type SecretUpdateAnswer struct {
	Secret
	Services []string `json:"services,omitempty"`
}

// SecretValue is one version of a stored value, as a session hands it to a node
// that runs a task using it.
type SecretValue struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	Data    []byte `json:"data"`
}

// DefaultSecretMode is a file's mode when the reference names none (docker's).
const DefaultSecretMode = 0o444

// Path is where a task's container sees the file: a secret's relative target
// under /run/secrets, any absolute target as it is.
func (r SecretRef) Path() string {
	if strings.HasPrefix(r.Target, "/") {
		return r.Target
	}
	return SecretsRoot + "/" + r.Target
}

// FilePath is where the file sits in the directory of its kind that a process
// engine task is told of: a secret's relative target as it is, any other target
// without its leading /.
func (r SecretRef) FilePath() string {
	if p, ok := strings.CutPrefix(r.Path(), SecretsRoot+"/"); ok {
		return p
	}
	return strings.TrimPrefix(r.Target, "/")
}

// String is the reference as `service inspect` users read it: NAME@VERSION.
func (r SecretRef) String() string {
	if r.Version == 0 {
		return r.Source
	}
	return r.Source + "@" + strconv.FormatUint(r.Version, 10)
}

// normalizeFiles fills the targets docker fills: a secret's is its name (under
// /run/secrets), a config's /NAME; a relative config target is taken from /.
// A mode of 0 becomes 0444, so every node reads the same spec.
func (s *ServiceSpec) normalizeFiles() {
	for i := range s.Secrets {
		r := &s.Secrets[i]
		if r.Target == "" {
			r.Target = r.Source
		}
		if r.Mode == 0 {
			r.Mode = DefaultSecretMode
		}
	}
	for i := range s.Configs {
		r := &s.Configs[i]
		if r.Target == "" {
			r.Target = "/" + r.Source
		} else if !strings.HasPrefix(r.Target, "/") {
			r.Target = "/" + r.Target
		}
		if r.Mode == 0 {
			r.Mode = DefaultSecretMode
		}
	}
}

// validateFiles checks the references: names, targets (clean paths, no two
// files at one place), uid and gid (numbers) and modes (permission bits only).
func (s *ServiceSpec) validateFiles() error {
	if len(s.Secrets)+len(s.Configs) > maxListItems {
		return fmt.Errorf("too many secrets and configs: %d, at most %d", len(s.Secrets)+len(s.Configs), maxListItems)
	}
	at := map[string]string{} // container path (and kind/file path) -> what is there
	for _, l := range []struct {
		kind SecretKind
		refs []SecretRef
	}{{KindSecret, s.Secrets}, {KindConfig, s.Configs}} {
		for _, r := range l.refs {
			if err := r.validate(l.kind); err != nil {
				return err
			}
			for _, p := range []string{r.Path(), string(l.kind) + ":" + r.FilePath()} {
				if other, ok := at[p]; ok {
					return fmt.Errorf("%s and %s %q both target %s: give one of them another target=", other, l.kind, r.Source, r.Path())
				}
				at[p] = fmt.Sprintf("%s %q", l.kind, r.Source)
			}
		}
	}
	return nil
}

func (r SecretRef) validate(kind SecretKind) error {
	if err := ValidateSecretName(kind, r.Source); err != nil {
		return err
	}
	t := r.Target
	bad := t == "" || t == "/" || len(t) > 4096 || path.Clean(t) != t || strings.ContainsRune(t, 0) ||
		t == ".." || strings.HasPrefix(t, "../") || strings.Contains(t, "/../")
	if bad {
		return fmt.Errorf("invalid target %.80q of %s %q: use a clean file path without '..'", t, kind, r.Source)
	}
	if kind == KindSecret && r.Path() == SecretsRoot {
		return fmt.Errorf("invalid target %q of secret %q: name a file, not %s itself", t, r.Source, SecretsRoot)
	}
	for _, id := range []struct{ what, v string }{{"uid", r.UID}, {"gid", r.GID}} {
		if id.v == "" {
			continue
		}
		if _, err := strconv.ParseUint(id.v, 10, 32); err != nil {
			return fmt.Errorf("invalid %s %.20q of %s %q: use a number", id.what, id.v, kind, r.Source)
		}
	}
	if r.Mode&^0o777 != 0 {
		return fmt.Errorf("invalid mode %#o of %s %q: use permission bits only, at most 0777", uint32(r.Mode), kind, r.Source)
	}
	return nil
}
