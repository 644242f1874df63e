package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// The flags create and update share for deployments, in docker's spellings: how a
// change rolls out (--update-*) and rolls back (--rollback-*), health checks,
// and how a task is stopped. Only flags given change the spec.

type rolloutFlags struct {
	prefix      string
	parallelism int64
	delay       time.Duration
	monitor     time.Duration
	action      string
	order       string
	ratio       float64
}

func (r *rolloutFlags) register(f *pflag.FlagSet, what string) {
	p := r.prefix
	f.Int64Var(&r.parallelism, p+"-parallelism", 1, "tasks "+what+" at once (0: all at once)")
	f.DurationVar(&r.delay, p+"-delay", 0, "wait between "+what+" batches")
	f.DurationVar(&r.monitor, p+"-monitor", 5*time.Second, "how long after a task starts its failure counts against the "+p)
	f.StringVar(&r.action, p+"-failure-action", "pause", "on failure: pause, continue"+map[bool]string{true: " or rollback", false: ""}[p == "update"])
	f.StringVar(&r.order, p+"-order", "stop-first", "stop-first or start-first")
	f.Float64Var(&r.ratio, p+"-max-failure-ratio", 0, "share of tasks that may fail (0 to 1)")
}

// apply writes the given flags into *cfg, starting from Docker's defaults.
func (r *rolloutFlags) apply(f *pflag.FlagSet, cfg **api.UpdateConfig) {
	p := r.prefix
	changed := func(n string) bool { return f.Changed(p + "-" + n) }
	if !changed("parallelism") && !changed("delay") && !changed("monitor") && !changed("failure-action") && !changed("order") && !changed("max-failure-ratio") {
		return
	}
	c := api.DefaultUpdateConfig()
	if *cfg != nil {
		c = **cfg
	}
	if changed("parallelism") {
		c.Parallelism = r.parallelism
	}
	if changed("delay") {
		c.Delay = r.delay
	}
	if changed("monitor") {
		c.Monitor = r.monitor
	}
	if changed("failure-action") {
		c.FailureAction = api.FailureAction(r.action)
	}
	if changed("order") {
		c.Order = api.UpdateOrder(r.order)
	}
	if changed("max-failure-ratio") {
		c.MaxFailureRatio = r.ratio
	}
	*cfg = &c
}

type deployFlags struct {
	update, rollback rolloutFlags
	healthCmd        string
	healthHTTP       string
	healthTCP        bool
	healthPort       int
	healthInterval   time.Duration
	healthTimeout    time.Duration
	healthStart      time.Duration
	healthRetries    int
	noHealth         bool
	stopGrace        time.Duration
	stopSignal       string
}

func (d *deployFlags) register(f *pflag.FlagSet) {
	d.update.prefix, d.rollback.prefix = "update", "rollback"
	d.update.register(f, "updated")
	d.rollback.register(f, "rolled back")
	f.StringVar(&d.healthCmd, "health-cmd", "", "command to run to check health (Docker runs it in the container; the worker runs it for the process engine)")
	f.StringVar(&d.healthHTTP, "health-http", "", "check health with an HTTP GET of this path on --health-port (2xx/3xx: healthy)")
	f.BoolVar(&d.healthTCP, "health-tcp", false, "check health by connecting to --health-port")
	f.IntVar(&d.healthPort, "health-port", 0, "target port the HTTP or TCP check uses (default: the first published target port)")
	f.DurationVar(&d.healthInterval, "health-interval", 0, "time between checks (default 30s)")
	f.DurationVar(&d.healthTimeout, "health-timeout", 0, "maximum time one check may take (default 30s)")
	f.DurationVar(&d.healthStart, "health-start-period", 0, "start period during which failed checks do not count")
	f.IntVar(&d.healthRetries, "health-retries", 0, "failures in a row that make a task unhealthy (default 3)")
	f.BoolVar(&d.noHealth, "no-healthcheck", false, "disable every health check, the image's too")
	f.DurationVar(&d.stopGrace, "stop-grace-period", api.DefaultStopGracePeriod, "time to wait after the stop signal before killing a task")
	f.StringVar(&d.stopSignal, "stop-signal", "", "signal that stops a task (default SIGTERM)")
}

func (d *deployFlags) apply(f *pflag.FlagSet, spec *api.ServiceSpec) error {
	d.update.apply(f, &spec.Update)
	d.rollback.apply(f, &spec.Rollback)
	healthFlags := []string{"health-cmd", "health-http", "health-tcp", "health-port", "health-interval", "health-timeout", "health-start-period", "health-retries", "no-healthcheck"}
	if slices.ContainsFunc(healthFlags, f.Changed) {
		h := api.HealthCheck{}
		if spec.Health != nil {
			h = *spec.Health
			h.Test = slices.Clone(h.Test)
		}
		if f.Changed("no-healthcheck") {
			if d.noHealth && (f.Changed("health-cmd") || f.Changed("health-http") || f.Changed("health-tcp")) {
				return errors.New("--no-healthcheck conflicts with --health-* options")
			}
			h.Disable = d.noHealth
		}
		if f.Changed("health-cmd") {
			h.Test = nil
			if d.healthCmd != "" {
				h.Test = []string{"CMD-SHELL", d.healthCmd}
			}
		}
		if f.Changed("health-http") {
			h.HTTPPath = d.healthHTTP
			if d.healthHTTP != "" {
				h.TCP = false
			}
		}
		if f.Changed("health-tcp") {
			h.TCP = d.healthTCP
			if d.healthTCP {
				h.HTTPPath = ""
			}
		}
		if f.Changed("health-port") {
			h.Port = d.healthPort
		}
		if f.Changed("health-interval") {
			h.Interval = d.healthInterval
		}
		if f.Changed("health-timeout") {
			h.Timeout = d.healthTimeout
		}
		if f.Changed("health-start-period") {
			h.StartPeriod = d.healthStart
		}
		if f.Changed("health-retries") {
			h.Retries = d.healthRetries
		}
		spec.Health = &h
		if h.Disable {
			spec.Health = &api.HealthCheck{Disable: true}
		}
	}
	if f.Changed("stop-grace-period") {
		g := d.stopGrace
		spec.StopGracePeriod = &g
	}
	if f.Changed("stop-signal") {
		spec.StopSignal = d.stopSignal
	}
	return nil
}

// newServiceUpdate changes a service the way docker's `service update` does: the
// spec is read, the flags given change it, and it is written back naming the
// version it was read at, so a concurrent change is refused rather than lost.
func newServiceUpdate() *cobra.Command {
	var (
		dep                                    deployFlags
		opts                                   optionFlags
		image, restart, endpointMode           string
		replicas                               int64
		envAdd, envRm, labelAdd, labelRm       []string
		publishAdd, publishRm, consAdd, consRm []string
		limCPU, limMem, resCPU, resMem         string
		restartDelay, restartWindow            time.Duration
		maxAttempts                            uint64
		args                                   string
		force, rollback, detach                bool
		place                                  placementFlags
	)
	c := &cobra.Command{
		Use:   "update [flags] SERVICE",
		Short: "Change a service; its tasks roll over to the new spec under its update settings",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, a []string) error {
			name, f := a[0], c.Flags()
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			if rollback {
				var other []string
				f.Visit(func(fl *pflag.Flag) {
					if fl.Name != "rollback" && fl.Name != "detach" && fl.Name != "host" {
						other = append(other, "--"+fl.Name)
					}
				})
				if len(other) > 0 {
					return fmt.Errorf("--rollback returns to the previous spec and cannot be combined with %s", strings.Join(other, ", "))
				}
				return rollbackService(ctx, cl, name, detach, c.OutOrStdout(), c.ErrOrStderr())
			}
			svc, err := cl.Service(ctx, name)
			if err != nil {
				return err
			}
			spec := svc.Spec.Clone()
			if f.Changed("image") {
				spec.Image = image
			}
			if f.Changed("args") {
				spec.Command = strings.Fields(args)
			}
			if f.Changed("replicas") {
				if replicas < 0 {
					return fmt.Errorf("invalid --replicas %d: must be 0 or more", replicas)
				}
				if spec.Mode == api.ModeGlobal {
					return errors.New("--replicas cannot be used with a global service")
				}
				spec.Replicas = uint64(replicas)
			}
			if f.Changed("endpoint-mode") {
				spec.EndpointMode = api.EndpointMode(endpointMode)
			}
			if spec.Env, err = updateKV(spec.Env, envAdd, envRm, "--env-add"); err != nil {
				return err
			}
			if spec.Labels, err = updateLabels(spec.Labels, labelAdd, labelRm); err != nil {
				return err
			}
			for _, p := range publishRm {
				if spec.Ports, err = removePort(spec.Ports, p); err != nil {
					return err
				}
			}
			for _, p := range publishAdd {
				pc, err := parsePublish(p)
				if err != nil {
					return err
				}
				spec.Ports = slices.DeleteFunc(spec.Ports, func(o api.PortConfig) bool { return o.TargetPort == pc.TargetPort && o.Protocol == pc.Protocol })
				spec.Ports = append(spec.Ports, pc)
			}
			spec.Constraints = slices.DeleteFunc(spec.Constraints, func(x string) bool { return slices.Contains(consRm, x) })
			for _, x := range consAdd {
				if !slices.Contains(spec.Constraints, x) {
					spec.Constraints = append(spec.Constraints, x)
				}
			}
			for _, r := range []struct {
				flag string
				dst  *int64
				cpu  bool
				val  string
			}{{"limit-cpu", &spec.Limits.NanoCPUs, true, limCPU}, {"reserve-cpu", &spec.Reservations.NanoCPUs, true, resCPU},
				{"limit-memory", &spec.Limits.MemoryBytes, false, limMem}, {"reserve-memory", &spec.Reservations.MemoryBytes, false, resMem}} {
				if !f.Changed(r.flag) {
					continue
				}
				parse := parseBytes
				if r.cpu {
					parse = parseCPU
				}
				if *r.dst, err = parse(r.val); err != nil {
					return err
				}
			}
			if f.Changed("restart-condition") {
				spec.RestartPolicy.Condition = api.RestartCondition(restart)
			}
			if f.Changed("restart-delay") {
				d := restartDelay
				spec.RestartPolicy.Delay = &d
			}
			if f.Changed("restart-max-attempts") {
				spec.RestartPolicy.MaxAttempts = maxAttempts
			}
			if f.Changed("restart-window") {
				spec.RestartPolicy.Window = restartWindow
			}
			if err := dep.apply(f, &spec); err != nil {
				return err
			}
			if err := opts.apply(f, &spec); err != nil {
				return err
			}
			if err := place.applyUpdate(f, &spec); err != nil {
				return err
			}
			if err := applyFileFlags(f, &spec); err != nil {
				return err
			}
			if force {
				spec.ForceUpdate++
			}
			spec.Normalize()
			if err := spec.Validate(); err != nil {
				return err
			}
			res, err := retryRefused(ctx, func(ctx context.Context) (api.Service, error) {
				return cl.UpdateService(ctx, name, api.ServiceUpdateRequest{Version: svc.SpecVersion, Spec: spec})
			})
			if errors.Is(err, api.ErrConflict) {
				return fmt.Errorf("%v: the service changed since it was read; run the update again", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), res.ID)
			if detach {
				return nil
			}
			if st := res.UpdateStatus; st == nil || st.State != api.UpdateUpdating || !st.StartedAt.Equal(res.UpdatedAt) {
				// Nothing the tasks run changed (replicas, update settings): no
				// rollout, only the replica count to reach.
				return waitConverged(ctx, cl, name, c.ErrOrStderr())
			}
			return waitRollout(ctx, cl, name, res.SpecVersion, false, c.ErrOrStderr())
		},
	}
	f := c.Flags()
	dep.register(f)
	opts.register(f, true)
	place.register(f, true)
	registerFileFlags(f, false)
	f.StringVar(&image, "image", "", "new image (the program, for the process engine)")
	f.StringVar(&args, "args", "", "new command arguments, space separated")
	f.Int64Var(&replicas, "replicas", 0, "number of tasks")
	f.StringVar(&endpointMode, "endpoint-mode", "vip", "vip or dnsrr")
	f.StringArrayVar(&envAdd, "env-add", nil, "add or change an environment variable K=V")
	f.StringArrayVar(&envRm, "env-rm", nil, "remove an environment variable K")
	f.StringArrayVar(&labelAdd, "label-add", nil, "add or change a label K=V")
	f.StringArrayVar(&labelRm, "label-rm", nil, "remove a label K")
	f.StringArrayVar(&publishAdd, "publish-add", nil, "publish a port: [PUBLISHED:]TARGET[/tcp|/udp]")
	f.StringArrayVar(&publishRm, "publish-rm", nil, "unpublish a port: TARGET[/PROTO] or PUBLISHED:TARGET")
	f.StringArrayVar(&consAdd, "constraint-add", nil, "add a placement constraint")
	f.StringArrayVar(&consRm, "constraint-rm", nil, "remove a placement constraint")
	f.StringVar(&limCPU, "limit-cpu", "", "CPU limit in cores")
	f.StringVar(&limMem, "limit-memory", "", "memory limit in bytes (512m, 1.5g, ...)")
	f.StringVar(&resCPU, "reserve-cpu", "", "CPU reservation in cores")
	f.StringVar(&resMem, "reserve-memory", "", "memory reservation in bytes")
	f.StringVar(&restart, "restart-condition", "any", "any, on-failure or none")
	f.DurationVar(&restartDelay, "restart-delay", 0, "fixed wait before replacing a finished task (unset: at once, then a backoff)")
	f.Uint64Var(&maxAttempts, "restart-max-attempts", 0, "give up on a slot after this many restarts (0: never)")
	f.DurationVar(&restartWindow, "restart-window", 0, "window the restart attempts are counted in")
	f.BoolVar(&force, "force", false, "redeploy every task even if nothing changed")
	f.BoolVar(&rollback, "rollback", false, "return to the previous spec (as service rollback)")
	f.BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for the rollout")
	return c
}

func newServiceRollback() *cobra.Command {
	var detach bool
	c := &cobra.Command{
		Use:   "rollback [--detach] SERVICE",
		Short: "Return a service to its previous spec, rolled out with its rollback settings",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, a []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			return rollbackService(ctx, cl, a[0], detach, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for the rollback")
	return c
}

func rollbackService(ctx context.Context, cl *client.Client, name string, detach bool, out, progress io.Writer) error {
	res, err := retryRefused(ctx, func(ctx context.Context) (api.Service, error) { return cl.RollbackService(ctx, name, 0) })
	if err != nil {
		return err
	}
	fmt.Fprintln(out, res.ID)
	if detach {
		return nil
	}
	return waitRollout(ctx, cl, name, res.SpecVersion, true, progress)
}

// updateKV applies --env-add (K=V, replacing K) and --env-rm (K) to a K=V list.
func updateKV(list, add, rm []string, flag string) ([]string, error) {
	out := slices.Clone(list)
	key := func(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }
	for _, k := range rm {
		out = slices.DeleteFunc(out, func(kv string) bool { return key(kv) == k })
	}
	for _, kv := range add {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid %s %q: expected KEY=VALUE", flag, kv)
		}
		out = slices.DeleteFunc(out, func(o string) bool { return key(o) == k })
		out = append(out, kv)
	}
	return out, nil
}

func updateLabels(labels map[string]string, add, rm []string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range labels {
		out[k] = v
	}
	for _, k := range rm {
		delete(out, k)
	}
	for _, kv := range add {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --label-add %q: expected KEY=VALUE", kv)
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// removePort drops the ports --publish-rm names: TARGET[/PROTO] or
// PUBLISHED:TARGET[/PROTO], as docker accepts.
func removePort(ports []api.PortConfig, spec string) ([]api.PortConfig, error) {
	pc, err := api.ParsePort(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid --publish-rm %q: %v", spec, err)
	}
	out := slices.DeleteFunc(slices.Clone(ports), func(p api.PortConfig) bool {
		return p.TargetPort == pc.TargetPort && p.Protocol == pc.Protocol && (pc.PublishedPort == 0 || p.PublishedPort == pc.PublishedPort)
	})
	if len(out) == len(ports) {
		return nil, fmt.Errorf("invalid --publish-rm %q: the service publishes no such port", spec)
	}
	return out, nil
}
