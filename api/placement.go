package api

import (
	"errors"
	"fmt"
	"strings"
)

// Jobs and placement (issue 12): what a node says of its platform and engine,
// the keys constraints and spread preferences may name, and the rules a job or
// placement setting must follow. The scheduler and orchestrator (dispatcher) act
// on them; this file only says what is valid.

// Platform is what a node's tasks run on, as its engine reports it: docker's
// OSType and Architecture (x86_64, aarch64), or Go's GOOS and GOARCH for the
// process engine. Constraints match architectures by alias (amd64 is x86_64).
type Platform struct {
	OS   string `json:"os,omitempty"`
	Arch string `json:"arch,omitempty"`
}

// NormalArch maps an architecture's aliases to one name, so that
// node.platform.arch==x86_64 (Swarm's spelling, uname's) matches a node that
// reports Go's amd64, and the other way round.
func NormalArch(a string) string {
	a = strings.ToLower(a)
	switch a {
	case "x86_64", "x86-64", "amd64":
		return "x86_64"
	case "aarch64", "arm64":
		return "aarch64"
	case "i386", "i686", "386", "x86":
		return "i386"
	case "armhf", "armv7l", "arm":
		return "arm"
	}
	return a
}

// Constraint and preference keys beyond the node's own fields.
const (
	KeyNodeLabels   = "node.labels."
	KeyEngineLabels = "engine.labels."
	KeyPlatformOS   = "node.platform.os"
	KeyPlatformArch = "node.platform.arch"
)

// PlacementValue is what a node holds for a constraint or spread key, and
// whether it holds it at all (a label it lacks). The keys are those
// ParseConstraint and ParsePlacementPref accept.
func PlacementValue(key string, n *Node) (string, bool) {
	switch key {
	case "node.id":
		return n.ID, true
	case "node.hostname":
		return n.Hostname, true
	case "node.role":
		return string(n.Role), true
	case "node.addr":
		return n.Addr, true
	case "node.engine":
		return n.Engine, true
	case KeyPlatformOS:
		return strings.ToLower(n.Platform.OS), n.Platform.OS != ""
	case KeyPlatformArch:
		return NormalArch(n.Platform.Arch), n.Platform.Arch != ""
	}
	if k, ok := strings.CutPrefix(key, KeyNodeLabels); ok {
		v, ok := n.Labels[k]
		return v, ok
	}
	if k, ok := strings.CutPrefix(key, KeyEngineLabels); ok {
		v, ok := n.EngineLabels[k]
		return v, ok
	}
	return "", false
}

// Holds reports whether node n satisfies the constraint. A missing label equals
// nothing, so node.labels.K!=V holds on a node without K. Platform values match
// without regard to case and architectures by alias, as Swarm's do.
func (c Constraint) Holds(n *Node) bool {
	v, ok := PlacementValue(c.Key, n)
	want := c.Value
	switch c.Key {
	case KeyPlatformOS:
		want = strings.ToLower(want)
	case KeyPlatformArch:
		want = NormalArch(want)
	}
	return (ok && v == want) == c.Equal
}

// ParsePlacementPref parses docker's --placement-pref: spread=KEY, where KEY is
// node.labels.K, engine.labels.K, node.platform.os or node.platform.arch.
func ParsePlacementPref(s string) (PlacementPref, error) {
	kind, key, ok := strings.Cut(s, "=")
	if !ok {
		return PlacementPref{}, fmt.Errorf("invalid placement preference %q: expected spread=KEY, e.g. spread=node.labels.zone", s)
	}
	if strings.TrimSpace(kind) != "spread" {
		return PlacementPref{}, fmt.Errorf("invalid placement preference %q: only spread is supported (spread=node.labels.KEY)", s)
	}
	p := PlacementPref{Spread: strings.TrimSpace(key)}
	return p, p.Validate()
}

// Validate checks the spread key.
func (p PlacementPref) Validate() error {
	k := p.Spread
	switch {
	case len(k) > 256:
		return fmt.Errorf("invalid placement preference: the key is %d bytes, at most 256", len(k))
	case k == KeyPlatformOS, k == KeyPlatformArch:
	case strings.HasPrefix(k, KeyNodeLabels) && len(k) > len(KeyNodeLabels):
	case strings.HasPrefix(k, KeyEngineLabels) && len(k) > len(KeyEngineLabels):
	default:
		return fmt.Errorf("invalid placement preference spread=%s: unknown spread key %q (use node.labels.KEY, engine.labels.KEY, node.platform.os or node.platform.arch)", k, k)
	}
	return nil
}

func (p PlacementPref) String() string { return "spread=" + p.Spread }

// maxPlacementPrefs bounds the nesting: each level is a pass over the nodes.
const maxPlacementPrefs = 8

// validateJobAndPlacement checks the settings jobs and placement bring, each
// against the mode it belongs to, as docker's CLI and SwarmKit refuse them.
func (s *ServiceSpec) validateJobAndPlacement() error {
	switch {
	case s.MaxConcurrent != 0 && s.Mode != ModeReplicatedJob:
		return fmt.Errorf("--max-concurrent can only be used with --mode replicated-job, not %s", s.Mode)
	case s.MaxConcurrent > MaxReplicas:
		return fmt.Errorf("max concurrent %d: at most %d", s.MaxConcurrent, MaxReplicas)
	case s.MaxReplicasPerNode != 0 && (s.Mode == ModeGlobal || s.Mode == ModeGlobalJob):
		return fmt.Errorf("--replicas-max-per-node can only be used with replicated or replicated-job mode, not %s", s.Mode)
	case s.Mode.IsJob() && (s.Update != nil || s.Rollback != nil):
		return errors.New("update and rollback settings do not apply to jobs: a job's update starts a new run of it")
	case len(s.PlacementPrefs) > maxPlacementPrefs:
		return fmt.Errorf("too many placement preferences: %d, at most %d", len(s.PlacementPrefs), maxPlacementPrefs)
	}
	for _, p := range s.PlacementPrefs {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// InJobRun reports whether task t belongs to the job's current run. A run
// starts when the job is created and whenever what its tasks run changes
// (update --force included: api.SameTaskSpec); a change of replicas or of
// max-concurrent goes on with the run, so a scale up runs only the completions
// added. JobRun is the spec version the run started at, and tasks made since
// carry that version or a later one.
func (s *Service) InJobRun(t *Task) bool { return t.SpecVersion >= s.JobRun }
