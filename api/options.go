package api

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Mounts and container options (issue 12): parsing of docker's spellings, the
// checks the API and the FSM run on a spec, and what each engine cannot do.
// Engines check again when they apply a spec (after template expansion on the
// worker, template.go).

// ParseMount reads docker's --mount: comma-separated key=value pairs, type
// (bind, volume or tmpfs; volume when omitted, as docker), source/src,
// target/dst/destination, readonly/ro (a bare key is true) and tmpfs-size (a
// size such as 64m, read by parseSize).
func ParseMount(s string, parseSize func(string) (int64, error)) (Mount, error) {
	m := Mount{Type: MountVolume}
	if strings.TrimSpace(s) == "" {
		return m, errors.New("invalid --mount \"\": expected type=bind|volume|tmpfs,source=...,target=...")
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		switch k {
		case "type":
			m.Type = MountType(strings.ToLower(v))
		case "source", "src":
			m.Source = v
		case "target", "dst", "destination":
			m.Target = v
		case "readonly", "ro":
			if !hasValue {
				m.ReadOnly = true
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return m, fmt.Errorf("invalid --mount %q: %s=%q is not true or false", s, k, v)
			}
			m.ReadOnly = b
		case "tmpfs-size":
			n, err := parseSize(v)
			if err != nil {
				return m, fmt.Errorf("invalid --mount %q: tmpfs-size: %v", s, err)
			}
			m.TmpfsSize = n
		default:
			return m, fmt.Errorf("invalid --mount %q: unknown key %q (use type, source, target, readonly, tmpfs-size)", s, k)
		}
		if !hasValue {
			return m, fmt.Errorf("invalid --mount %q: %s needs a value (%s=...)", s, k, k)
		}
	}
	if hasTemplate(m.Source) || hasTemplate(m.Target) {
		return m, nil // checked expanded for a sample task by Validate
	}
	if err := m.validate(); err != nil {
		return m, fmt.Errorf("invalid --mount %q: %w", s, err)
	}
	return m, nil
}

// ParseUlimit reads docker's --ulimit NAME=SOFT[:HARD]; -1 is unlimited.
func ParseUlimit(s string) (Ulimit, error) {
	name, vals, ok := strings.Cut(s, "=")
	if !ok {
		return Ulimit{}, fmt.Errorf("invalid --ulimit %q: expected NAME=SOFT[:HARD]", s)
	}
	soft, hard, hasHard := strings.Cut(vals, ":")
	u := Ulimit{Name: strings.ToLower(strings.TrimSpace(name))}
	var err error
	if u.Soft, err = strconv.ParseInt(soft, 10, 64); err != nil {
		return u, fmt.Errorf("invalid --ulimit %q: soft limit %q is not a number", s, soft)
	}
	u.Hard = u.Soft
	if hasHard {
		if u.Hard, err = strconv.ParseInt(hard, 10, 64); err != nil {
			return u, fmt.Errorf("invalid --ulimit %q: hard limit %q is not a number", s, hard)
		}
	}
	if err := u.validate(); err != nil {
		return u, fmt.Errorf("invalid --ulimit %q: %w", s, err)
	}
	return u, nil
}

func (u Ulimit) String() string {
	return fmt.Sprintf("%s=%d:%d", u.Name, u.Soft, u.Hard)
}

// ulimitNames are the resources setrlimit knows, in docker's spellings.
var ulimitNames = []string{"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
	"nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}

func (u Ulimit) validate() error {
	if !slices.Contains(ulimitNames, u.Name) {
		return fmt.Errorf("unknown ulimit %q (use one of %s)", u.Name, strings.Join(ulimitNames, ", "))
	}
	if u.Soft < -1 || u.Hard < -1 {
		return fmt.Errorf("ulimit %s: limits are numbers from 0, or -1 for unlimited", u.Name)
	}
	// -1 is unlimited: above every number.
	if u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
		return fmt.Errorf("ulimit %s: the soft limit %d is above the hard limit %d", u.Name, u.Soft, u.Hard)
	}
	return nil
}

// ParseSysctl reads --sysctl KEY=VALUE.
func ParseSysctl(s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || k == "" {
		return "", "", fmt.Errorf("invalid --sysctl %q: expected KEY=VALUE", s)
	}
	if err := validateSysctl(k, v); err != nil {
		return "", "", fmt.Errorf("invalid --sysctl %q: %w", s, err)
	}
	return k, v, nil
}

// namespacedSysctls are the kernel settings a container has its own copy of
// (IPC namespace), besides the fs.mqueue.* and net.* families; any other sysctl
// would change the whole node, which is why Docker refuses it too.
var namespacedSysctls = []string{"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

var sysctlKeyRE = regexp.MustCompile(`^[a-z0-9_]+(\.[a-zA-Z0-9_@:-]+)+$`)

func validateSysctl(k, v string) error {
	if !sysctlKeyRE.MatchString(k) {
		return fmt.Errorf("sysctl %q: not a sysctl name (dot-separated, such as net.core.somaxconn)", k)
	}
	if !slices.Contains(namespacedSysctls, k) && !strings.HasPrefix(k, "net.") && !strings.HasPrefix(k, "fs.mqueue.") {
		return fmt.Errorf("sysctl %q is not namespaced: it would change the whole node (allowed: net.*, fs.mqueue.*, %s)", k, strings.Join(namespacedSysctls, ", "))
	}
	if v == "" || strings.ContainsAny(v, "\n\x00") {
		return fmt.Errorf("sysctl %q: empty or multi-line value", k)
	}
	return nil
}

// capabilities are Linux's capability names without the CAP_ prefix.
var capabilities = []string{"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
	"LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
	"NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
	"SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM"}

// NormalizeCapability spells a capability as Docker's API does, CAP_NAME in
// upper case (ALL stays ALL), and says whether Linux knows it.
func NormalizeCapability(c string) (string, bool) {
	u := strings.ToUpper(strings.TrimSpace(c))
	if u == "ALL" {
		return u, true
	}
	u = strings.TrimPrefix(u, "CAP_")
	return "CAP_" + u, slices.Contains(capabilities, u)
}

var (
	// Docker's own rule for volume names.
	volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	// RFC 1123 labels, as Docker checks a container's hostname.
	hostnameRE = regexp.MustCompile(`^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$`)
	// user[:group], each a name or a number.
	userRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]*\$?(:[a-zA-Z0-9_][a-zA-Z0-9_.-]*\$?)?$`)
)

// maxHostname is the kernel's limit on a host name (__NEW_UTS_LEN).
const maxHostname = 64

// ReservedLabelPrefix starts the labels swarmlet puts on the workloads it runs
// (node/engine): a user's container label may not use it, so no spec can
// disguise a container as another task's or another node's.
const ReservedLabelPrefix = "swarmlet."

// validate checks a mount whose template fields are already expanded (or hold
// none): it is what an engine is about to do.
func (m Mount) validate() error {
	if m.Target == "" {
		return errors.New("a target is required (target=/path/in/the/container)")
	}
	if !path.IsAbs(m.Target) {
		return fmt.Errorf("target %q is not an absolute path", m.Target)
	}
	if path.Clean(m.Target) == "/" {
		return errors.New("target / would hide the whole file system")
	}
	if m.TmpfsSize != 0 && m.Type != MountTmpfs {
		return fmt.Errorf("tmpfs-size is for type=tmpfs, not type=%s", m.Type)
	}
	switch m.Type {
	case MountBind:
		if m.Source == "" {
			return errors.New("type=bind needs a source (an absolute path on the node)")
		}
		if !path.IsAbs(m.Source) {
			return fmt.Errorf("bind source %q is not an absolute path", m.Source)
		}
	case MountVolume:
		// No source: an anonymous volume, removed with its task.
		if m.Source != "" && !volumeNameRE.MatchString(m.Source) {
			return fmt.Errorf("volume name %q: use letters, digits, '_', '.' and '-', at least 2, starting with a letter or digit", m.Source)
		}
	case MountTmpfs:
		if m.Source != "" {
			return errors.New("type=tmpfs takes no source")
		}
		if m.TmpfsSize < 0 {
			return errors.New("tmpfs-size cannot be negative")
		}
	case "":
		return errors.New("a type is required: bind, volume or tmpfs")
	default:
		return fmt.Errorf("unknown mount type %q: use bind, volume or tmpfs", m.Type)
	}
	return nil
}

// normalizeOptions spells capabilities as the engines take them and drops an
// empty option set, so that equal specs compare equal (SameTaskSpec).
func (s *ServiceSpec) normalizeOptions() {
	if len(s.Mounts) == 0 {
		s.Mounts = nil
	}
	o := s.Container
	if o == nil {
		return
	}
	for _, caps := range []*[]string{&o.CapAdd, &o.CapDrop} {
		for i, c := range *caps {
			if n, ok := NormalizeCapability(c); ok {
				(*caps)[i] = n
			}
		}
		if len(*caps) == 0 {
			*caps = nil
		}
	}
	if len(o.Entrypoint) == 0 {
		o.Entrypoint = nil
	}
	if len(o.ContainerLabels) == 0 {
		o.ContainerLabels = nil
	}
	if len(o.Sysctls) == 0 {
		o.Sysctls = nil
	}
	if len(o.Ulimits) == 0 {
		o.Ulimits = nil
	}
	if len(o.DNSOptions) == 0 {
		o.DNSOptions = nil
	}
	if o.isZero() {
		s.Container = nil
	}
}

func (o *ContainerOptions) isZero() bool {
	return o.Hostname == "" && o.User == "" && o.Workdir == "" && len(o.Entrypoint) == 0 && len(o.ContainerLabels) == 0 &&
		!o.Init && !o.ReadOnly && len(o.CapAdd) == 0 && len(o.CapDrop) == 0 && len(o.Sysctls) == 0 &&
		len(o.Ulimits) == 0 && o.PidsLimit == 0 && len(o.DNSOptions) == 0
}

// cloneOptions copies the mounts and container options of a spec deeply.
func cloneOptions(s ServiceSpec) ([]Mount, *ContainerOptions) {
	mounts := slices.Clone(s.Mounts)
	if s.Container == nil {
		return mounts, nil
	}
	o := *s.Container
	o.Entrypoint = slices.Clone(o.Entrypoint)
	o.ContainerLabels = maps.Clone(o.ContainerLabels)
	o.CapAdd, o.CapDrop = slices.Clone(o.CapAdd), slices.Clone(o.CapDrop)
	o.Sysctls = maps.Clone(o.Sysctls)
	o.Ulimits = slices.Clone(o.Ulimits)
	o.DNSOptions = slices.Clone(o.DNSOptions)
	return mounts, &o
}

// validateOptions checks the mounts and container options of a spec as the user
// wrote them: templates must parse and, expanded for a sample task, give what
// an engine accepts; the worker checks the real expansion again.
func (s *ServiceSpec) validateOptions() error {
	if err := s.validateOptionSizes(); err != nil {
		return err
	}
	if err := s.validateTemplates(); err != nil {
		return err
	}
	sample, err := s.expand(sampleTemplateContext(s))
	if err != nil {
		return err
	}
	if err := sample.ValidateExpanded(); err != nil {
		templated := false
		s.templated(func(_ string, p *string) { templated = templated || hasTemplate(*p) })
		if templated {
			return fmt.Errorf("%w (templates expanded for a sample task: slot 1 on a node named \"node\")", err)
		}
		return err
	}
	return nil
}

// ValidateExpanded checks mounts and container options once templates are
// expanded: what the worker hands an engine. Engines call it before they apply
// a spec, so a task that got past the API by another way is refused too.
func (s *ServiceSpec) ValidateExpanded() error {
	targets := map[string]bool{}
	for _, m := range s.Mounts {
		if err := m.validate(); err != nil {
			return fmt.Errorf("invalid mount %s: %w", m, err)
		}
		t := path.Clean(m.Target)
		if targets[t] {
			return fmt.Errorf("invalid mount %s: two mounts at %s", m, t)
		}
		targets[t] = true
	}
	o := s.Container
	if o == nil {
		return nil
	}
	if o.Hostname != "" && (len(o.Hostname) > maxHostname || !hostnameRE.MatchString(o.Hostname)) {
		return fmt.Errorf("invalid hostname %q: use at most %d letters, digits, '-' and '.' (RFC 1123)", o.Hostname, maxHostname)
	}
	if o.User != "" && !userRE.MatchString(o.User) {
		return fmt.Errorf("invalid user %q: expected USER[:GROUP], each a name or a number", o.User)
	}
	if o.Workdir != "" && !path.IsAbs(o.Workdir) {
		return fmt.Errorf("invalid workdir %q: not an absolute path", o.Workdir)
	}
	// Sorted: the FSM runs this too, and every manager must name the same problem.
	for _, k := range slices.Sorted(maps.Keys(o.ContainerLabels)) {
		if k == "" {
			return errors.New("invalid container label: empty key")
		}
		if strings.HasPrefix(k, ReservedLabelPrefix) {
			return fmt.Errorf("invalid container label %q: the %s prefix is swarmlet's own", k, ReservedLabelPrefix)
		}
	}
	for _, caps := range [][]string{o.CapAdd, o.CapDrop} {
		for _, c := range caps {
			if _, ok := NormalizeCapability(c); !ok {
				return fmt.Errorf("unknown capability %q (such as NET_ADMIN or CAP_SYS_TIME; see capabilities(7))", c)
			}
		}
	}
	for _, c := range o.CapAdd {
		if slices.Contains(o.CapDrop, c) && c != "ALL" {
			return fmt.Errorf("capability %s is both added and dropped", c)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Sysctls)) {
		if err := validateSysctl(k, o.Sysctls[k]); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, u := range o.Ulimits {
		if err := u.validate(); err != nil {
			return err
		}
		if seen[u.Name] {
			return fmt.Errorf("ulimit %s given twice", u.Name)
		}
		seen[u.Name] = true
	}
	if o.PidsLimit < 0 {
		return fmt.Errorf("invalid --limit-pids %d: use 0 (no limit) or more", o.PidsLimit)
	}
	for _, d := range o.DNSOptions {
		if d == "" || strings.ContainsAny(d, " \t\n") {
			return fmt.Errorf("invalid DNS option %q: one resolv.conf option such as ndots:2", d)
		}
	}
	return nil
}

func (m Mount) String() string {
	s := "type=" + string(m.Type)
	if m.Source != "" {
		s += ",source=" + m.Source
	}
	s += ",target=" + m.Target
	if m.ReadOnly {
		s += ",readonly"
	}
	if m.TmpfsSize != 0 {
		s += ",tmpfs-size=" + strconv.FormatInt(m.TmpfsSize, 10)
	}
	return s
}

// validateOptionSizes bounds the options as validateSizes bounds the rest.
func (s *ServiceSpec) validateOptionSizes() error {
	var strs []string
	for _, m := range s.Mounts {
		strs = append(strs, m.Source, m.Target)
	}
	n := len(s.Mounts)
	if o := s.Container; o != nil {
		strs = append(strs, o.Hostname, o.User, o.Workdir)
		strs = append(strs, o.Entrypoint...)
		strs = append(strs, o.CapAdd...)
		strs = append(strs, o.CapDrop...)
		strs = append(strs, o.DNSOptions...)
		for k, v := range o.ContainerLabels {
			strs = append(strs, k, v)
		}
		for k, v := range o.Sysctls {
			strs = append(strs, k, v)
		}
		for _, u := range o.Ulimits {
			strs = append(strs, u.Name)
		}
		n = max(n, len(o.Entrypoint), len(o.ContainerLabels), len(o.CapAdd), len(o.CapDrop), len(o.Sysctls), len(o.Ulimits), len(o.DNSOptions))
	}
	if n > maxListItems {
		return fmt.Errorf("too many mounts or container options: at most %d of each", maxListItems)
	}
	total := 0
	for _, v := range strs {
		if len(v) > maxFieldBytes {
			return fmt.Errorf("a mount or container option is %d bytes, at most %d", len(v), maxFieldBytes)
		}
		total += len(v)
	}
	if total > maxSpecStrings {
		return fmt.Errorf("mounts and container options are too large: %d bytes, at most %d", total, maxSpecStrings)
	}
	return nil
}

// Engine names, as nodes report them (Node.Engine).
const (
	EngineDocker  = "docker"
	EngineProcess = "process"
)

// EngineGaps names, in flag spellings, what of a spec an engine cannot carry
// out; nil when it can run it all. The process engine runs plain child
// processes: no mounts, namespaces or capability sets. It honours --user (when
// the daemon runs as root), --workdir, the environment, and --limit-cpu,
// --limit-memory and --limit-pids through cgroups; a node whose cgroups do not
// allow a limit rejects its tasks with the reason.
//
// The API refuses a spec that could only land on engines with gaps; the
// scheduler keeps such tasks off those nodes, naming the gap; the engine
// itself refuses at start.
func (s *ServiceSpec) EngineGaps(engine string) []string {
	if engine != EngineProcess {
		return nil
	}
	var gaps []string
	if len(s.Mounts) > 0 {
		gaps = append(gaps, "--mount")
	}
	o := s.Container
	if o == nil {
		return gaps
	}
	for _, g := range []struct {
		flag string
		set  bool
	}{
		{"--hostname", o.Hostname != ""},
		{"--entrypoint", len(o.Entrypoint) > 0},
		{"--container-label", len(o.ContainerLabels) > 0},
		{"--init", o.Init},
		{"--read-only", o.ReadOnly},
		{"--cap-add", len(o.CapAdd) > 0},
		{"--cap-drop", len(o.CapDrop) > 0},
		{"--sysctl", len(o.Sysctls) > 0},
		{"--ulimit", len(o.Ulimits) > 0},
		{"--dns-option", len(o.DNSOptions) > 0},
	} {
		if g.set {
			gaps = append(gaps, g.flag)
		}
	}
	return gaps
}

// EngineGapError is the one line that says an engine cannot run a spec.
func EngineGapError(engine string, gaps []string) string {
	return fmt.Sprintf("engine %s cannot honour %s", engine, strings.Join(gaps, ", "))
}
