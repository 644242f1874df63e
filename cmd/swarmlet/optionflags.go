package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"unicode"

	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
)

// The mount and container-option flags of service create and update, in
// docker's spellings (api/extras.go has what they set). Create takes lists
// (--mount, --sysctl, ...); update takes the -add/-rm pairs docker has. Only
// flags given change the spec.
type optionFlags struct {
	update                  bool
	mounts, mountRm         []string
	hostname, user, workdir string
	entrypoint              string
	envFiles                []string
	labels, labelRm         []string
	init, readOnly          bool
	capAdd, capDrop         []string
	sysctls, sysctlRm       []string
	ulimits, ulimitRm       []string
	dnsOptions, dnsOptionRm []string
	pidsLimit               int64
}

func (o *optionFlags) register(f *pflag.FlagSet, update bool) {
	o.update = update
	add := ""
	if update {
		add = "-add"
	}
	f.StringArrayVar(&o.mounts, "mount"+add, nil, "mount: type=bind|volume|tmpfs,source=SRC,target=/PATH[,readonly][,tmpfs-size=64m]; templates such as {{.Task.Slot}} in source and target")
	f.StringArrayVar(&o.labels, "container-label"+add, nil, "container label K=V")
	f.StringArrayVar(&o.sysctls, "sysctl"+add, nil, "namespaced kernel parameter K=V (net.*, fs.mqueue.*, kernel.shm*/msg*/sem)")
	f.StringArrayVar(&o.ulimits, "ulimit"+add, nil, "ulimit NAME=SOFT[:HARD], e.g. nofile=1024:2048")
	f.StringArrayVar(&o.dnsOptions, "dns-option"+add, nil, "resolver option, e.g. ndots:2 (added to the cluster's DNS settings)")
	if update {
		f.StringArrayVar(&o.mountRm, "mount-rm", nil, "remove the mount at a target path")
		f.StringArrayVar(&o.labelRm, "container-label-rm", nil, "remove a container label K")
		f.StringArrayVar(&o.sysctlRm, "sysctl-rm", nil, "remove a sysctl K")
		f.StringArrayVar(&o.ulimitRm, "ulimit-rm", nil, "remove a ulimit NAME")
		f.StringArrayVar(&o.dnsOptionRm, "dns-option-rm", nil, "remove a resolver option")
	} else {
		f.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a file (KEY=VALUE lines; --env wins)")
	}
	f.StringVar(&o.hostname, "hostname", "", "container hostname; templates such as {{.Service.Name}}-{{.Task.Slot}}")
	f.StringVarP(&o.user, "user", "u", "", "user the task runs as: USER[:GROUP], names or numbers")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory of the task")
	f.StringVar(&o.entrypoint, "entrypoint", "", "replace the image's ENTRYPOINT (split as a shell would; \"\" resets it on update)")
	f.BoolVar(&o.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	f.BoolVar(&o.readOnly, "read-only", false, "mount the container's root file system read-only")
	f.StringArrayVar(&o.capAdd, "cap-add", nil, "add a Linux capability (NET_ADMIN, CAP_SYS_TIME, ALL)")
	f.StringArrayVar(&o.capDrop, "cap-drop", nil, "drop a Linux capability")
	f.Int64Var(&o.pidsLimit, "limit-pids", 0, "most processes the task may have (0: no limit)")
}

// apply changes spec as the given flags say; create starts from an empty spec.
func (o *optionFlags) apply(f *pflag.FlagSet, spec *api.ServiceSpec) error {
	if spec.Container == nil {
		spec.Container = &api.ContainerOptions{}
	}
	c := spec.Container
	var err error
	if spec.Mounts, err = o.applyMounts(spec.Mounts); err != nil {
		return err
	}
	if f.Changed("hostname") {
		c.Hostname = o.hostname
	}
	if f.Changed("user") {
		c.User = o.user
	}
	if f.Changed("workdir") {
		c.Workdir = o.workdir
	}
	if f.Changed("entrypoint") {
		if c.Entrypoint, err = shellWords(o.entrypoint); err != nil {
			return fmt.Errorf("invalid --entrypoint %q: %v", o.entrypoint, err)
		}
	}
	if f.Changed("init") {
		c.Init = o.init
	}
	if f.Changed("read-only") {
		c.ReadOnly = o.readOnly
	}
	if f.Changed("limit-pids") {
		if o.pidsLimit < 0 {
			return fmt.Errorf("invalid --limit-pids %d: use 0 (no limit) or more", o.pidsLimit)
		}
		c.PidsLimit = o.pidsLimit
	}
	if c.ContainerLabels, err = applyMap(c.ContainerLabels, o.labels, o.labelRm, o.flag("container-label"), func(s string) (string, string, error) {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return "", "", errors.New("expected KEY=VALUE")
		}
		return k, v, nil
	}); err != nil {
		return err
	}
	if c.Sysctls, err = applyMap(c.Sysctls, o.sysctls, o.sysctlRm, o.flag("sysctl"), api.ParseSysctl); err != nil {
		return err
	}
	if c.Ulimits, err = o.applyUlimits(c.Ulimits); err != nil {
		return err
	}
	for _, d := range o.dnsOptionRm {
		c.DNSOptions = slices.DeleteFunc(c.DNSOptions, func(x string) bool { return x == d })
	}
	for _, d := range o.dnsOptions {
		if !slices.Contains(c.DNSOptions, d) {
			c.DNSOptions = append(c.DNSOptions, d)
		}
	}
	// Docker's update semantics: adding a capability takes it off the drop list,
	// and dropping one takes it off the add list.
	capName := func(raw string) string {
		if name, ok := api.NormalizeCapability(raw); ok {
			return name
		}
		return raw // as the user wrote it, for Validate's error
	}
	for _, raw := range o.capAdd {
		name := capName(raw)
		c.CapDrop = slices.DeleteFunc(c.CapDrop, func(x string) bool { return x == name })
		if !slices.Contains(c.CapAdd, name) {
			c.CapAdd = append(c.CapAdd, name)
		}
	}
	for _, raw := range o.capDrop {
		name := capName(raw)
		c.CapAdd = slices.DeleteFunc(c.CapAdd, func(x string) bool { return x == name })
		if !slices.Contains(c.CapDrop, name) {
			c.CapDrop = append(c.CapDrop, name)
		}
	}
	if len(o.envFiles) > 0 {
		var fromFiles []string
		for _, name := range o.envFiles {
			env, err := readEnvFile(name)
			if err != nil {
				return err
			}
			fromFiles = append(fromFiles, env...)
		}
		spec.Env = mergeEnv(fromFiles, spec.Env)
	}
	return nil // Normalize drops an empty option set
}

// flag is the name a list flag has here: --sysctl on create, --sysctl-add on update.
func (o *optionFlags) flag(name string) string {
	if o.update {
		return "--" + name + "-add"
	}
	return "--" + name
}

func (o *optionFlags) applyMounts(mounts []api.Mount) ([]api.Mount, error) {
	out := slices.Clone(mounts)
	for _, target := range o.mountRm {
		n := len(out)
		out = slices.DeleteFunc(out, func(m api.Mount) bool { return path.Clean(m.Target) == path.Clean(target) })
		if len(out) == n {
			return nil, fmt.Errorf("invalid --mount-rm %q: the service has no mount at that target", target)
		}
	}
	for _, s := range o.mounts {
		m, err := api.ParseMount(s, parseBytes)
		if err != nil {
			if o.update {
				return nil, errors.New(strings.Replace(err.Error(), "--mount ", "--mount-add ", 1))
			}
			return nil, err
		}
		if o.update {
			// As --publish-add: a mount at a target already mounted replaces it.
			out = slices.DeleteFunc(out, func(x api.Mount) bool { return path.Clean(x.Target) == path.Clean(m.Target) })
		}
		out = append(out, m)
	}
	return out, nil
}

func (o *optionFlags) applyUlimits(cur []api.Ulimit) ([]api.Ulimit, error) {
	out := slices.Clone(cur)
	for _, name := range o.ulimitRm {
		out = slices.DeleteFunc(out, func(u api.Ulimit) bool { return u.Name == strings.ToLower(name) })
	}
	for _, s := range o.ulimits {
		u, err := api.ParseUlimit(s)
		if err != nil {
			return nil, errors.New(strings.Replace(err.Error(), "--ulimit ", o.flag("ulimit")+" ", 1))
		}
		out = slices.DeleteFunc(out, func(x api.Ulimit) bool { return x.Name == u.Name })
		out = append(out, u)
	}
	return out, nil
}

// applyMap removes the keys rm names and sets the K=V entries of add.
func applyMap(cur map[string]string, add, rm []string, flag string, parse func(string) (string, string, error)) (map[string]string, error) {
	if len(add) == 0 && len(rm) == 0 {
		return cur, nil
	}
	out := map[string]string{}
	for k, v := range cur {
		out[k] = v
	}
	for _, k := range rm {
		delete(out, k)
	}
	for _, s := range add {
		k, v, err := parse(s)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "invalid ") {
				msg = fmt.Sprintf("invalid %s %q: %s", flag, s, msg)
			}
			return nil, errors.New(msg)
		}
		out[k] = v
	}
	return out, nil
}

// readEnvFile reads docker's env-file format: KEY=VALUE lines (the value as
// written), KEY alone takes the variable from this shell if set, blank lines
// and lines starting with # are skipped.
func readEnvFile(name string) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a UTF-8 byte-order mark
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeftFunc(sc.Text(), unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, hasValue := strings.Cut(line, "=")
		if k == "" || strings.ContainsFunc(k, unicode.IsSpace) {
			return nil, fmt.Errorf("--env-file %s:%d: invalid variable name %q", name, n, k)
		}
		if !hasValue {
			if v, ok := os.LookupEnv(k); ok {
				out = append(out, k+"="+v)
			}
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", name, err)
	}
	return out, nil
}

// mergeEnv is base with over's entries replacing those of the same key: one
// entry per key, so no engine has to pick between two.
func mergeEnv(base, over []string) []string {
	key := func(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }
	var out []string
	for i, kv := range base {
		k := key(kv)
		later := func(o string) bool { return key(o) == k }
		if slices.ContainsFunc(over, later) || slices.ContainsFunc(base[i+1:], later) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, over...)
}

// shellWords splits s as a POSIX shell splits words: blanks separate, quotes
// group, a backslash escapes (not inside single quotes). It is how docker reads
// --entrypoint.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\' && quote != '\'':
			if i+1 == len(rs) {
				return nil, errors.New("a trailing backslash")
			}
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
