package stack

import (
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/go-units"

	"github.com/swarmlet/swarmlet/api"
)

// shortNameRE: a compose service's name is its short DNS name inside the stack,
// so it must be a host name label (compose itself also allows '.', '_' and
// capitals).
var shortNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// objectNameRE is Docker's rule for secret and config names.
var objectNameRE = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)

// convert maps a loaded project to the stack's specs, objects and warnings.
func convert(p *types.Project) (*Stack, error) {
	st := &Stack{Name: p.Name}
	used := map[string]map[string]bool{"secret": {}, "config": {}}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		spec, warns, err := serviceSpec(p, svc)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		for _, s := range svc.Secrets {
			used["secret"][s.Source] = true
		}
		for _, c := range svc.Configs {
			used["config"][c.Source] = true
		}
		spec.Normalize()
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		st.Services = append(st.Services, spec)
		for _, w := range warns {
			st.Warnings = append(st.Warnings, fmt.Sprintf("services.%s.%s", name, w))
		}
	}
	var err error
	if st.Secrets, err = objects(p, "secret", used["secret"]); err != nil {
		return nil, err
	}
	if st.Configs, err = objects(p, "config", used["config"]); err != nil {
		return nil, err
	}
	return st, nil
}

// serviceSpec is one compose service as a swarmlet spec (not yet normalized),
// with warnings for what it cannot carry (relative to services.NAME).
func serviceSpec(p *types.Project, svc types.ServiceConfig) (api.ServiceSpec, []string, error) {
	var warns []string
	if !shortNameRE.MatchString(svc.Name) {
		return api.ServiceSpec{}, nil, fmt.Errorf("invalid name %q: a stack's services are found by their names in DNS, so use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit", svc.Name)
	}
	if svc.Image == "" {
		return api.ServiceSpec{}, nil, fmt.Errorf("no image: a stack runs images, it does not build them")
	}
	spec := api.ServiceSpec{
		Name:    api.StackServiceName(p.Name, svc.Name),
		Image:   svc.Image,
		Command: slices.Clone([]string(svc.Command)),
		Labels:  map[string]string{api.LabelStackNamespace: p.Name, api.LabelStackImage: svc.Image},
	}
	for _, k := range slices.Sorted(maps.Keys(svc.Environment)) {
		v := svc.Environment[k]
		if v == nil {
			warns = append(warns, fmt.Sprintf("environment.%s has no value (it is not set where the file is deployed) and is left out", k))
			continue
		}
		spec.Env = append(spec.Env, k+"="+*v)
	}
	var err error
	if spec.Ports, err = ports(svc.Ports); err != nil {
		return spec, nil, err
	}
	if err := deploy(&spec, svc); err != nil {
		return spec, nil, err
	}
	spec.Health = health(svc.HealthCheck)
	if svc.StopGracePeriod != nil {
		d := time.Duration(*svc.StopGracePeriod)
		spec.StopGracePeriod = &d
	}
	spec.StopSignal = svc.StopSignal
	if spec.Secrets, err = refs(p, "secret", svc.Secrets); err != nil {
		return spec, nil, err
	}
	if spec.Configs, err = refs(p, "config", []types.ServiceSecretConfig(fileRefs(svc.Configs))); err != nil {
		return spec, nil, err
	}
	mounts, mw, err := mounts(p, svc)
	if err != nil {
		return spec, nil, err
	}
	spec.Mounts, warns = mounts, append(warns, mw...)
	spec.Container = container(svc)
	return spec, warns, nil
}

func fileRefs(cs []types.ServiceConfigObjConfig) []types.ServiceSecretConfig {
	out := make([]types.ServiceSecretConfig, len(cs))
	for i, c := range cs {
		out[i] = types.ServiceSecretConfig(c)
	}
	return out
}

func ports(ps []types.ServicePortConfig) ([]api.PortConfig, error) {
	var out []api.PortConfig
	for _, p := range ps {
		pc := api.PortConfig{Protocol: strings.ToLower(p.Protocol), TargetPort: int(p.Target), PublishMode: api.PublishIngress}
		if p.Mode == "host" {
			pc.PublishMode = api.PublishHost
		} else if p.Mode != "" && p.Mode != "ingress" {
			return nil, fmt.Errorf("ports: mode %q: use ingress or host", p.Mode)
		}
		if p.Published != "" {
			n, err := strconv.Atoi(p.Published)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("ports: published port %q: a stack publishes one port per target (no ranges)", p.Published)
			}
			pc.PublishedPort = n
		}
		out = append(out, pc)
	}
	return out, nil
}

// nanoCPUs reads compose's cpus (a float32) as the decimal the file wrote:
// 0.1 is 100000000 nano-CPUs, not float32's 100000001.
func nanoCPUs(c types.NanoCPUs) int64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(c), 'f', -1, 32), 64)
	return int64(math.Round(f * 1e9))
}

func ratio(r float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(r), 'f', -1, 32), 64)
	return f
}

func deploy(spec *api.ServiceSpec, svc types.ServiceConfig) error {
	d := svc.Deploy
	if d == nil {
		d = &types.DeployConfig{}
	}
	replicas := 1
	if d.Replicas != nil {
		replicas = *d.Replicas
	} else if svc.Scale != nil {
		replicas = *svc.Scale
	}
	if replicas < 0 {
		return fmt.Errorf("deploy.replicas %d: cannot be negative", replicas)
	}
	switch d.Mode {
	case "", "replicated":
		spec.Mode, spec.Replicas = api.ModeReplicated, uint64(replicas)
	case "global":
		spec.Mode = api.ModeGlobal
	case "replicated-job":
		// As Docker's stack convert: replicas is both the completions and
		// how many run at once (MaxConcurrent 0 means Replicas).
		spec.Mode, spec.Replicas = api.ModeReplicatedJob, uint64(replicas)
	case "global-job":
		spec.Mode = api.ModeGlobalJob
	default:
		return fmt.Errorf("deploy.mode %q: use replicated, global, replicated-job or global-job", d.Mode)
	}
	switch d.EndpointMode {
	case "":
	case "vip", "dnsrr":
		spec.EndpointMode = api.EndpointMode(d.EndpointMode)
	default:
		return fmt.Errorf("deploy.endpoint_mode %q: use vip or dnsrr", d.EndpointMode)
	}
	for k, v := range d.Labels {
		spec.Labels[k] = v
	}
	if l := d.Resources.Limits; l != nil {
		spec.Limits = api.Resources{NanoCPUs: nanoCPUs(l.NanoCPUs), MemoryBytes: int64(l.MemoryBytes)}
	}
	if r := d.Resources.Reservations; r != nil {
		spec.Reservations = api.Resources{NanoCPUs: nanoCPUs(r.NanoCPUs), MemoryBytes: int64(r.MemoryBytes)}
	}
	for _, c := range d.Placement.Constraints {
		// "node.role == manager" as compose files write it, stored as the
		// CLI's node.role==manager.
		if pc, err := api.ParseConstraint(c); err == nil {
			c = pc.String()
		}
		spec.Constraints = append(spec.Constraints, strings.TrimSpace(c))
	}
	for _, pref := range d.Placement.Preferences {
		spec.PlacementPrefs = append(spec.PlacementPrefs, api.PlacementPref{Spread: pref.Spread})
	}
	spec.MaxReplicasPerNode = d.Placement.MaxReplicas
	if rp := d.RestartPolicy; rp != nil {
		spec.RestartPolicy.Condition = api.RestartCondition(rp.Condition)
		if rp.Delay != nil {
			dl := time.Duration(*rp.Delay)
			spec.RestartPolicy.Delay = &dl
		}
		if rp.MaxAttempts != nil {
			spec.RestartPolicy.MaxAttempts = *rp.MaxAttempts
		}
		if rp.Window != nil {
			spec.RestartPolicy.Window = time.Duration(*rp.Window)
		}
	}
	spec.Update = rollout(d.UpdateConfig)
	spec.Rollback = rollout(d.RollbackConfig)
	return nil
}

// rollout is compose's update_config (or rollback_config) over Docker's
// defaults: what the file leaves out keeps its default. Compose cannot tell a
// monitor of 0 from none, so 0 keeps the default too, as Swarm does.
func rollout(u *types.UpdateConfig) *api.UpdateConfig {
	if u == nil {
		return nil
	}
	c := api.DefaultUpdateConfig()
	if u.Parallelism != nil {
		c.Parallelism = int64(*u.Parallelism)
	}
	c.Delay = time.Duration(u.Delay)
	if u.Monitor != 0 {
		c.Monitor = time.Duration(u.Monitor)
	}
	if u.FailureAction != "" {
		c.FailureAction = api.FailureAction(u.FailureAction)
	}
	if u.Order != "" {
		c.Order = api.UpdateOrder(u.Order)
	}
	c.MaxFailureRatio = ratio(u.MaxFailureRatio)
	return &c
}

func health(h *types.HealthCheckConfig) *api.HealthCheck {
	if h == nil {
		return nil
	}
	if h.Disable || (len(h.Test) > 0 && h.Test[0] == "NONE") {
		return &api.HealthCheck{Disable: true}
	}
	out := &api.HealthCheck{Test: slices.Clone([]string(h.Test))}
	if h.Interval != nil {
		out.Interval = time.Duration(*h.Interval)
	}
	if h.Timeout != nil {
		out.Timeout = time.Duration(*h.Timeout)
	}
	if h.StartPeriod != nil {
		out.StartPeriod = time.Duration(*h.StartPeriod)
	}
	if h.Retries != nil {
		out.Retries = int(*h.Retries)
	}
	return out
}

// refs maps a service's secrets (or configs) to the stored objects' names.
// Target defaults as Swarm's: the compose key under /run/secrets/ for a
// secret, /KEY for a config.
func refs(p *types.Project, kind string, rs []types.ServiceSecretConfig) ([]api.SecretRef, error) {
	var out []api.SecretRef
	for _, r := range rs {
		var name string
		switch kind {
		case "secret":
			o, ok := p.Secrets[r.Source]
			if !ok {
				return nil, fmt.Errorf("secrets: %q is not defined in the top-level secrets", r.Source)
			}
			name = o.Name
		default:
			o, ok := p.Configs[r.Source]
			if !ok {
				return nil, fmt.Errorf("configs: %q is not defined in the top-level configs", r.Source)
			}
			name = o.Name
		}
		ref := api.SecretRef{Source: name, Target: r.Target, UID: r.UID, GID: r.GID}
		if ref.Target == "" {
			ref.Target = r.Source
			if kind == "config" {
				ref.Target = "/" + r.Source
			}
		}
		if r.Mode != nil {
			ref.Mode = os.FileMode(*r.Mode)
		}
		out = append(out, ref)
	}
	return out, nil
}

// mounts maps volumes (named, bind, tmpfs) and the tmpfs key.
func mounts(p *types.Project, svc types.ServiceConfig) ([]api.Mount, []string, error) {
	var out []api.Mount
	var warns []string
	for _, v := range svc.Volumes {
		m := api.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume:
			m.Type = api.MountVolume
			if v.Source != "" {
				vol, ok := p.Volumes[v.Source]
				if !ok {
					return nil, nil, fmt.Errorf("volumes: %q is not defined in the top-level volumes", v.Source)
				}
				m.Source = vol.Name
			}
		case types.VolumeTypeBind:
			m.Type, m.Source = api.MountBind, v.Source
		case types.VolumeTypeTmpfs:
			m.Type = api.MountTmpfs
			if v.Tmpfs != nil {
				m.TmpfsSize = int64(v.Tmpfs.Size)
			}
		default:
			warns = append(warns, fmt.Sprintf("volumes: type %s (%s) is not supported and is left out: use volume, bind or tmpfs", v.Type, v.Target))
			continue
		}
		out = append(out, m)
	}
	for _, t := range svc.Tmpfs {
		path, opts, _ := strings.Cut(t, ":")
		m := api.Mount{Type: api.MountTmpfs, Target: path}
		for _, o := range strings.Split(opts, ",") {
			k, val, _ := strings.Cut(o, "=")
			switch {
			case o == "":
			case k == "size":
				n, err := units.RAMInBytes(val)
				if err != nil {
					return nil, nil, fmt.Errorf("tmpfs %q: size %q: %v", t, val, err)
				}
				m.TmpfsSize = n
			default:
				warns = append(warns, fmt.Sprintf("tmpfs: option %q of %s is not supported and is ignored", o, path))
			}
		}
		out = append(out, m)
	}
	return out, warns, nil
}

func container(svc types.ServiceConfig) *api.ContainerOptions {
	c := api.ContainerOptions{
		Hostname: svc.Hostname, User: svc.User, Workdir: svc.WorkingDir,
		Entrypoint: slices.Clone([]string(svc.Entrypoint)),
		ReadOnly:   svc.ReadOnly, CapAdd: slices.Clone(svc.CapAdd), CapDrop: slices.Clone(svc.CapDrop),
		DNSOptions: slices.Clone(svc.DNSOpts), PidsLimit: svc.PidsLimit,
	}
	if svc.Init != nil {
		c.Init = *svc.Init
	}
	if svc.Deploy != nil && svc.Deploy.Resources.Limits != nil && svc.Deploy.Resources.Limits.Pids != 0 {
		c.PidsLimit = svc.Deploy.Resources.Limits.Pids
	}
	if len(svc.Labels) > 0 {
		c.ContainerLabels = map[string]string(svc.Labels)
	}
	if len(svc.Sysctls) > 0 {
		c.Sysctls = map[string]string(svc.Sysctls)
	}
	for _, name := range slices.Sorted(maps.Keys(svc.Ulimits)) {
		u := svc.Ulimits[name]
		l := api.Ulimit{Name: name, Soft: int64(u.Soft), Hard: int64(u.Hard)}
		if u.Single != 0 {
			l.Soft, l.Hard = int64(u.Single), int64(u.Single)
		}
		c.Ulimits = append(c.Ulimits, l)
	}
	if isZero(c) {
		return nil
	}
	return &c
}

func isZero(c api.ContainerOptions) bool {
	return c.Hostname == "" && c.User == "" && c.Workdir == "" && len(c.Entrypoint) == 0 && len(c.ContainerLabels) == 0 &&
		!c.Init && !c.ReadOnly && len(c.CapAdd) == 0 && len(c.CapDrop) == 0 && len(c.Sysctls) == 0 && len(c.Ulimits) == 0 &&
		c.PidsLimit == 0 && len(c.DNSOptions) == 0
}

// objects are the top-level secrets (or configs) the services use, with their
// data read: from a file, an environment variable, or inline content.
func objects(p *types.Project, kind string, used map[string]bool) ([]Object, error) {
	var out []Object
	for _, key := range slices.Sorted(maps.Keys(used)) {
		var fo types.FileObjectConfig
		if kind == "secret" {
			fo = types.FileObjectConfig(p.Secrets[key])
		} else {
			fo = types.FileObjectConfig(p.Configs[key])
		}
		o := Object{Key: key, Name: fo.Name, External: bool(fo.External)}
		if len(o.Name) > 64 || !objectNameRE.MatchString(o.Name) {
			return nil, fmt.Errorf("%ss.%s: invalid name %q: use 1-64 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", kind, key, o.Name)
		}
		switch {
		case o.External:
		case fo.File != "":
			b, err := os.ReadFile(fo.File)
			if err != nil {
				return nil, fmt.Errorf("%ss.%s: %w", kind, key, err)
			}
			o.Data, o.From = b, "file "+fo.File
		case fo.Environment != "":
			v, ok := p.Environment[fo.Environment]
			if !ok {
				return nil, fmt.Errorf("%ss.%s: environment variable %s is not set", kind, key, fo.Environment)
			}
			o.Data, o.From = []byte(v), "environment "+fo.Environment
		case fo.Content != "":
			o.Data, o.From = []byte(fo.Content), "content"
		default:
			return nil, fmt.Errorf("%ss.%s: give file, environment%s, or external: true", kind, key, map[bool]string{true: ", content"}[kind == "config"])
		}
		if !o.External {
			o.Labels = map[string]string{api.LabelStackNamespace: p.Name}
			for k, v := range fo.Labels {
				o.Labels[k] = v
			}
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
