package engine

import (
	"path/filepath"

	"github.com/swarmlet/swarmlet/api"
)

// Where a task's secrets and configs are: the node writes them under
// Config.FilesDir (node/taskfiles: an in-memory filesystem) before the engine
// starts the task, one directory per task, and removes them once its workload
// is gone. The docker engine bind-mounts each file read-only at its target; the
// process engine names the two directories in the task's environment. One
// layout, computed here, so the writer and the engines agree.

// Environment variables a process engine task finds its files by: each file
// at DIR/TARGET (a relative secret target as it is, an absolute target without
// its leading /; a config's default target is its name).
const (
	EnvSecretsDir = "SWARMLET_SECRETS_DIR"
	EnvConfigsDir = "SWARMLET_CONFIGS_DIR"
)

// TaskFile is one secret or config file of a task.
type TaskFile struct {
	Kind api.SecretKind
	Ref  api.SecretRef
	Host string // the file on the node
	Path string // where a container sees it
}

// TaskFilesDir is the directory of one task's files.
func TaskFilesDir(root, taskID string) string { return filepath.Join(root, taskID) }

func kindDir(root, taskID string, kind api.SecretKind) string {
	return filepath.Join(TaskFilesDir(root, taskID), string(kind)+"s")
}

// TaskFiles lists t's files as they lie under root.
func TaskFiles(root string, t *api.Task) []TaskFile {
	var out []TaskFile
	for _, l := range []struct {
		kind api.SecretKind
		refs []api.SecretRef
	}{{api.KindSecret, t.Spec.Secrets}, {api.KindConfig, t.Spec.Configs}} {
		for _, r := range l.refs {
			out = append(out, TaskFile{Kind: l.kind, Ref: r, Path: r.Path(),
				Host: filepath.Join(kindDir(root, t.ID, l.kind), filepath.FromSlash(r.FilePath()))})
		}
	}
	return out
}

// FilesEnv names, for a process engine task, the directories its files are in.
func FilesEnv(root string, t *api.Task) []string {
	var env []string
	if len(t.Spec.Secrets) > 0 {
		env = append(env, EnvSecretsDir+"="+kindDir(root, t.ID, api.KindSecret))
	}
	if len(t.Spec.Configs) > 0 {
		env = append(env, EnvConfigsDir+"="+kindDir(root, t.ID, api.KindConfig))
	}
	return env
}
