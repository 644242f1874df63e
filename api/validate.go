package api

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// nameRE admits '_' inside a name, as DNS labels may hold it and Docker's service
// names do: a stack's services are named STACK_SERVICE (api/stack.go).
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`)

// ValidateName checks a service name: it must be a valid DNS label, since the
// service is found by that name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid service name %q: use 1-63 lower-case letters, digits, '-' and '_', starting and ending with a letter or digit", name)
	}
	return nil
}

// Constraint is one placement rule such as node.labels.zone==a.
type Constraint struct {
	Key   string // node.id, node.hostname, node.role, node.addr, node.engine, node.labels.K, engine.labels.K, node.platform.os|arch
	Equal bool   // == or !=
	Value string
}

func (c Constraint) String() string {
	op := "!="
	if c.Equal {
		op = "=="
	}
	return c.Key + op + c.Value
}

// ParseConstraint parses KEY==VALUE or KEY!=VALUE.
func ParseConstraint(expr string) (Constraint, error) {
	var c Constraint
	var parts []string
	switch {
	case strings.Contains(expr, "=="):
		parts, c.Equal = strings.SplitN(expr, "==", 2), true
	case strings.Contains(expr, "!="):
		parts = strings.SplitN(expr, "!=", 2)
	default:
		return c, fmt.Errorf("invalid constraint %q: expected KEY==VALUE or KEY!=VALUE", expr)
	}
	c.Key, c.Value = strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
	if c.Value == "" {
		return c, fmt.Errorf("invalid constraint %q: empty value", expr)
	}
	switch {
	case c.Key == "node.id", c.Key == "node.hostname", c.Key == "node.role", c.Key == "node.addr", c.Key == "node.engine":
	case c.Key == KeyPlatformOS, c.Key == KeyPlatformArch:
	case strings.HasPrefix(c.Key, KeyNodeLabels) && len(c.Key) > len(KeyNodeLabels):
	case strings.HasPrefix(c.Key, KeyEngineLabels) && len(c.Key) > len(KeyEngineLabels):
	default:
		return c, fmt.Errorf("invalid constraint %q: unknown key %q (use node.id, node.hostname, node.role, node.addr, node.engine, node.labels.KEY, engine.labels.KEY, node.platform.os or node.platform.arch)", expr, c.Key)
	}
	return c, nil
}

// ParsePort parses [PUBLISHED:]TARGET[/tcp|/udp] as the docker CLI does.
func ParsePort(spec string) (PortConfig, error) {
	p := PortConfig{Protocol: "tcp", PublishMode: PublishIngress}
	rest := spec
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		p.Protocol = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return p, fmt.Errorf("invalid port %q: protocol must be tcp or udp", spec)
		}
	}
	pub, target, found := strings.Cut(rest, ":")
	if !found {
		target, pub = pub, ""
	}
	var err error
	if p.TargetPort, err = parsePortNumber(target); err != nil {
		return p, fmt.Errorf("invalid port %q: target: %w", spec, err)
	}
	if pub != "" {
		if p.PublishedPort, err = parsePortNumber(pub); err != nil {
			return p, fmt.Errorf("invalid port %q: published: %w", spec, err)
		}
	}
	return p, nil
}

func parsePortNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// Normalize fills defaults in a spec so that every node sees the same spec.
func (s *ServiceSpec) Normalize() {
	if s.Mode == "" {
		s.Mode = ModeReplicated
	}
	if s.EndpointMode == "" {
		s.EndpointMode = EndpointVIP
	}
	if s.RestartPolicy.Condition == "" {
		s.RestartPolicy.Condition = RestartAny
		if s.Mode.IsJob() {
			// As Swarm: a job's task that exits 0 is done, one that fails is retried.
			s.RestartPolicy.Condition = RestartOnFailure
		}
	}
	s.normalizeDeploy()
	s.normalizeOptions()
	s.normalizeFiles()
	for i := range s.Ports {
		if s.Ports[i].Protocol == "" {
			s.Ports[i].Protocol = "tcp"
		}
		if s.Ports[i].PublishMode == "" {
			s.Ports[i].PublishMode = PublishIngress
		}
	}
}

// Bounds on what one spec may hold: a spec is copied into every task and every
// Raft entry that carries one, so an unbounded field is a way to exhaust managers.
const (
	MaxReplicas    = 100_000
	maxListItems   = 1000     // env entries, labels, constraints, ports, command args
	maxFieldBytes  = 64 << 10 // one env entry, label, argument or image name
	maxSpecStrings = 1 << 20  // all of a spec's strings together
)

// Validate reports the first problem with a spec, in words a user can act on.
func (s *ServiceSpec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if err := s.validateSizes(); err != nil {
		return err
	}
	if s.Image == "" {
		return errors.New("an image is required")
	}
	if err := s.validateImagePin(); err != nil {
		return err
	}
	switch s.Mode {
	case ModeReplicated:
	case ModeGlobal, ModeGlobalJob:
		if s.Replicas != 0 {
			return fmt.Errorf("--replicas cannot be used with --mode %s", s.Mode)
		}
	case ModeReplicatedJob:
	default:
		return fmt.Errorf("invalid mode %q: use replicated, global, replicated-job or global-job", s.Mode)
	}
	if err := s.validateJobAndPlacement(); err != nil {
		return err
	}
	switch s.EndpointMode {
	case EndpointVIP, EndpointDNSRR:
	default:
		return fmt.Errorf("invalid endpoint mode %q: use vip or dnsrr", s.EndpointMode)
	}
	seen := map[string]bool{}
	for _, p := range s.Ports {
		if p.TargetPort < 1 || p.TargetPort > 65535 || p.PublishedPort < 0 || p.PublishedPort > 65535 {
			return fmt.Errorf("invalid port %d:%d", p.PublishedPort, p.TargetPort)
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return fmt.Errorf("invalid protocol %q: use tcp or udp", p.Protocol)
		}
		if p.PublishMode != PublishIngress && p.PublishMode != PublishHost {
			return fmt.Errorf("invalid publish mode %q: use ingress or host", p.PublishMode)
		}
		if p.PublishedPort != 0 {
			k := fmt.Sprintf("%d/%s", p.PublishedPort, p.Protocol)
			if seen[k] {
				return fmt.Errorf("port %s published twice", k)
			}
			seen[k] = true
		}
	}
	for _, c := range s.Constraints {
		if _, err := ParseConstraint(c); err != nil {
			return err
		}
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("invalid env %q: expected KEY=VALUE", e)
		}
	}
	if s.Limits.NanoCPUs < 0 || s.Limits.MemoryBytes < 0 || s.Reservations.NanoCPUs < 0 || s.Reservations.MemoryBytes < 0 {
		return errors.New("resource limits and reservations cannot be negative")
	}
	switch s.RestartPolicy.Condition {
	case RestartAny, RestartOnFailure, RestartNone:
	default:
		return fmt.Errorf("invalid restart condition %q: use any, on-failure or none", s.RestartPolicy.Condition)
	}
	if err := s.validateOptions(); err != nil {
		return err
	}
	if err := s.validateFiles(); err != nil {
		return err
	}
	return s.validateDeploy()
}

var idRE = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// ValidateID checks an object ID taken from a path or a header before it is used
// to look anything up: IDs are lower-case letters and digits, at most 64.
func ValidateID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("invalid ID %q: IDs are 1-64 lower-case letters and digits", id)
	}
	return nil
}

func (s *ServiceSpec) validateSizes() error {
	if s.Replicas > MaxReplicas {
		return fmt.Errorf("replicas %d: at most %d", s.Replicas, MaxReplicas)
	}
	total := len(s.Image)
	lists := []struct {
		what  string
		items []string
	}{{"command arguments", s.Command}, {"env entries", s.Env}, {"constraints", s.Constraints}}
	for _, l := range lists {
		if len(l.items) > maxListItems {
			return fmt.Errorf("too many %s: %d, at most %d", l.what, len(l.items), maxListItems)
		}
		for _, v := range l.items {
			if len(v) > maxFieldBytes {
				return fmt.Errorf("one of the %s is %d bytes, at most %d", l.what, len(v), maxFieldBytes)
			}
			total += len(v)
		}
	}
	if len(s.Labels) > maxListItems || len(s.Ports) > maxListItems {
		return fmt.Errorf("too many labels or ports: at most %d each", maxListItems)
	}
	for k, v := range s.Labels {
		if len(k)+len(v) > maxFieldBytes {
			return fmt.Errorf("label %.40q is too long: at most %d bytes", k, maxFieldBytes)
		}
		total += len(k) + len(v)
	}
	if len(s.Image) > maxFieldBytes {
		return fmt.Errorf("image name is %d bytes, at most %d", len(s.Image), maxFieldBytes)
	}
	if total > maxSpecStrings {
		return fmt.Errorf("spec is too large: %d bytes of strings, at most %d", total, maxSpecStrings)
	}
	return nil
}
