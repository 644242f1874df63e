package process

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// What the process engine does with a spec's container options. It runs plain
// child processes, so it honours what a process has: a working directory, a
// user (when the daemon is root), the environment, and limits through cgroups
// (cgroup.go). The rest (mounts, hostname, capabilities, ...) it refuses, as
// api.EngineGaps lists, rather than run the task without them.

// taskOptions is how one task's process is to be started.
type taskOptions struct {
	dir    string
	cred   *syscall.Credential
	env    []string // HOME and USER of --user, before the task's own variables
	limits cgroupLimits
}

func (e *Engine) taskOptions(t *api.Task) (taskOptions, error) {
	var opts taskOptions
	if gaps := t.Spec.EngineGaps(api.EngineProcess); len(gaps) > 0 {
		return opts, fmt.Errorf("%s (run the service on a node with the docker engine): %w", api.EngineGapError(api.EngineProcess, gaps), engine.ErrRejected)
	}
	if err := t.Spec.ValidateExpanded(); err != nil {
		return opts, fmt.Errorf("%v: %w", err, engine.ErrRejected)
	}
	opts.limits = limitsOf(&t.Spec)
	o := t.Spec.Container
	if o == nil {
		return opts, nil
	}
	if o.Workdir != "" {
		if st, err := os.Stat(o.Workdir); err != nil || !st.IsDir() {
			return opts, fmt.Errorf("workdir %s is not a directory on node %s: %w", o.Workdir, e.cfg.NodeID, engine.ErrRejected)
		}
		opts.dir = o.Workdir
	}
	if o.User != "" {
		cred, home, name, err := credential(o.User)
		if err != nil {
			return opts, fmt.Errorf("user %q: %v: %w", o.User, err, engine.ErrRejected)
		}
		if os.Geteuid() != 0 && (int(cred.Uid) != os.Getuid() || int(cred.Gid) != os.Getgid()) {
			return opts, fmt.Errorf("user %q: the daemon runs as uid %d, not root, so its tasks can only run as that user: %w", o.User, os.Getuid(), engine.ErrRejected)
		}
		if os.Geteuid() == 0 {
			opts.cred = cred
		}
		opts.env = append(opts.env, "HOME="+home)
		if name != "" {
			opts.env = append(opts.env, "USER="+name, "LOGNAME="+name)
		}
	}
	return opts, nil
}

// credential resolves USER[:GROUP] on this node as Docker resolves it in an
// image: a name must exist; a number need not, and then its group is 0; a
// named user also gets the groups it is a member of.
func credential(spec string) (cred *syscall.Credential, home, name string, err error) {
	who, group, hasGroup := strings.Cut(spec, ":")
	cred = &syscall.Credential{}
	home = "/"
	var u *user.User
	if id, nerr := strconv.ParseUint(who, 10, 32); nerr == nil {
		cred.Uid = uint32(id)
		u, _ = user.LookupId(who) // absent: uid only, group 0
	} else if u, err = user.Lookup(who); err != nil {
		return nil, "", "", fmt.Errorf("no such user on this node")
	}
	if u != nil {
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid, home, name = uint32(uid), uint32(gid), u.HomeDir, u.Username
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) != cred.Gid {
					cred.Groups = append(cred.Groups, uint32(n))
				}
			}
		}
	}
	if hasGroup {
		cred.Groups = nil // an explicit group replaces the user's own
		if id, nerr := strconv.ParseUint(group, 10, 32); nerr == nil {
			cred.Gid = uint32(id)
		} else if g, err := user.LookupGroup(group); err != nil {
			return nil, "", "", fmt.Errorf("no such group %q on this node", group)
		} else {
			id, _ := strconv.ParseUint(g.Gid, 10, 32)
			cred.Gid = uint32(id)
		}
	}
	return cred, home, name, nil
}

// newCgroup makes the task's cgroups if its spec sets limits (nil if not).
func (e *Engine) newCgroup(t *api.Task, l cgroupLimits) (*taskCgroup, error) {
	if l.none() {
		return nil, nil
	}
	root := e.CgroupRoot
	if root == "" {
		root = DefaultCgroupRoot
	}
	cg, err := newTaskCgroup(root, e.cfg.NodeID, t.ID, l)
	if err != nil {
		return nil, fmt.Errorf("the process engine cannot apply %s on node %s: %v: %w", l.flags(), e.cfg.NodeID, err, engine.ErrRejected)
	}
	return cg, nil
}
