package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
)

// The flags of jobs and placement, in docker's spellings: --max-concurrent for
// replicated jobs, --placement-pref (create) and --placement-pref-add/-rm
// (update), --replicas-max-per-node. Only flags given change the spec; the
// cluster checks the result again (api.ServiceSpec.Validate).
type placementFlags struct {
	maxConcurrent           uint64
	maxPerNode              uint64
	prefs, prefsAdd, prefRm []string
}

func (p *placementFlags) register(f *pflag.FlagSet, update bool) {
	f.Uint64Var(&p.maxConcurrent, "max-concurrent", 0, "replicated-job: how many tasks run at once (default: --replicas)")
	f.Uint64Var(&p.maxPerNode, "replicas-max-per-node", 0, "at most this many tasks of the service on one node (0: no limit)")
	if update {
		f.StringArrayVar(&p.prefsAdd, "placement-pref-add", nil, "add a placement preference, spread=node.labels.KEY (nested after those the service has)")
		f.StringArrayVar(&p.prefRm, "placement-pref-rm", nil, "remove a placement preference, spread=node.labels.KEY")
		return
	}
	f.StringArrayVar(&p.prefs, "placement-pref", nil, "placement preference spread=node.labels.KEY (engine.labels.KEY, node.platform.os|arch); several nest in order")
}

// applyCreate sets what create's flags say, after the other flags: a job's
// defaults are Swarm's (no replicas for a global job; restart on failure, so a
// task that exits 0 is done).
func (p *placementFlags) applyCreate(f *pflag.FlagSet, spec *api.ServiceSpec) error {
	switch spec.Mode {
	case api.ModeGlobalJob:
		if f.Changed("replicas") {
			return errors.New("--replicas cannot be used with --mode global-job")
		}
		spec.Replicas = 0
	}
	if spec.Mode.IsJob() && !f.Changed("restart-condition") {
		spec.RestartPolicy.Condition = "" // Normalize: on-failure for jobs
	}
	for _, s := range p.prefs {
		pref, err := api.ParsePlacementPref(s)
		if err != nil {
			return err
		}
		spec.PlacementPrefs = append(spec.PlacementPrefs, pref)
	}
	return p.applyCommon(f, spec)
}

// applyUpdate changes the spec read from the cluster as update's flags say.
func (p *placementFlags) applyUpdate(f *pflag.FlagSet, spec *api.ServiceSpec) error {
	prefs := slices.Clone(spec.PlacementPrefs)
	for _, s := range p.prefRm {
		pref, err := parsePrefFlag("--placement-pref-rm", s)
		if err != nil {
			return err
		}
		n := len(prefs)
		if prefs = slices.DeleteFunc(prefs, func(o api.PlacementPref) bool { return o == pref }); len(prefs) == n {
			return fmt.Errorf("invalid --placement-pref-rm %q: the service has no such preference (it has %s)", s, prefList(spec.PlacementPrefs))
		}
	}
	for _, s := range p.prefsAdd {
		pref, err := parsePrefFlag("--placement-pref-add", s)
		if err != nil {
			return err
		}
		if !slices.Contains(prefs, pref) {
			prefs = append(prefs, pref)
		}
	}
	spec.PlacementPrefs = prefs
	return p.applyCommon(f, spec)
}

func (p *placementFlags) applyCommon(f *pflag.FlagSet, spec *api.ServiceSpec) error {
	if f.Changed("max-concurrent") {
		if spec.Mode != api.ModeReplicatedJob {
			return fmt.Errorf("--max-concurrent can only be used with --mode replicated-job (service mode: %s)", spec.Mode)
		}
		spec.MaxConcurrent = p.maxConcurrent
	}
	if f.Changed("replicas-max-per-node") {
		if spec.Mode == api.ModeGlobal || spec.Mode == api.ModeGlobalJob {
			return fmt.Errorf("--replicas-max-per-node can only be used with replicated or replicated-job mode (service mode: %s)", spec.Mode)
		}
		spec.MaxReplicasPerNode = p.maxPerNode
	}
	return nil
}

func parsePrefFlag(flag, s string) (api.PlacementPref, error) {
	pref, err := api.ParsePlacementPref(s)
	if err != nil {
		return pref, fmt.Errorf("invalid %s: %w", flag, err)
	}
	return pref, nil
}

func prefList(ps []api.PlacementPref) string {
	if len(ps) == 0 {
		return "none"
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}
