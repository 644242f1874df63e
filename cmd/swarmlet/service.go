package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

func newServiceCmd() *cobra.Command {
	c := newGroup("service", "Manage services")
	c.AddCommand(newServiceCreate(), newServiceLs(), newServicePs(), newServiceInspect(), newServiceScale(), newServiceRm(), newServiceLogs(),
		newServiceUpdate(), newServiceRollback())
	return c
}

// parseBytes reads a size as the docker CLI does (units.RAMInBytes): a number,
// possibly with a fraction, and an optional binary unit b, k, m, g, t or p, which
// may be followed by b or ib, in any case: 512m, 1.5g, 512MiB, 2GB.
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	bad := fmt.Errorf("invalid size %q: use a number of bytes, optionally with a unit such as 512m, 1.5g or 512MiB", s)
	u := strings.ToLower(strings.TrimSpace(s))
	u = strings.TrimSuffix(u, "ib")
	if len(u) > 1 && strings.HasSuffix(u, "b") && strings.ContainsAny(u[len(u)-2:len(u)-1], "kmgtp") {
		u = strings.TrimSuffix(u, "b")
	}
	mult := 1.0
	if n := len(u); n > 0 {
		if i := strings.IndexByte("bkmgtp", u[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i))
			u = u[:n-1]
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult > math.MaxInt64/2 {
		return 0, bad
	}
	return int64(f * mult), nil
}

func parseCPU(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid CPU amount %q: use a number of cores such as 0.5", s)
	}
	return int64(f * 1e9), nil
}

func newServiceCreate() *cobra.Command {
	var (
		spec                                        api.ServiceSpec
		replicas                                    int64
		mode, endpointMode, restart                 string
		env, labels, publish, constraints           []string
		limCPU, limMem, resCPU, resMem, restartWait string
		detach                                      bool
		maxAttempts                                 uint64
		dep                                         deployFlags
		imgFlags                                    imageFlags
		opts                                        optionFlags
		place                                       placementFlags
	)
	c := &cobra.Command{
		Use:   "create --name NAME [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create a service",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			spec.Image, spec.Command = args[0], args[1:]
			spec.Mode, spec.EndpointMode = api.ServiceMode(mode), api.EndpointMode(endpointMode)
			if replicas < 0 {
				return fmt.Errorf("invalid --replicas %d: must be 0 or more", replicas)
			}
			if c.Flags().Changed("replicas") {
				if spec.Mode == api.ModeGlobal {
					return fmt.Errorf("--replicas cannot be used with --mode global")
				}
				spec.Replicas = uint64(replicas)
			} else if spec.Mode != api.ModeGlobal {
				spec.Replicas = 1
			}
			spec.Env, spec.Constraints = env, constraints
			for _, kv := range labels {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("invalid --label %q: expected KEY=VALUE", kv)
				}
				if spec.Labels == nil {
					spec.Labels = map[string]string{}
				}
				spec.Labels[k] = v
			}
			for _, p := range publish {
				pc, err := parsePublish(p)
				if err != nil {
					return err
				}
				spec.Ports = append(spec.Ports, pc)
			}
			var err error
			if spec.Limits.NanoCPUs, err = parseCPU(limCPU); err != nil {
				return err
			}
			if spec.Reservations.NanoCPUs, err = parseCPU(resCPU); err != nil {
				return err
			}
			if spec.Limits.MemoryBytes, err = parseBytes(limMem); err != nil {
				return err
			}
			if spec.Reservations.MemoryBytes, err = parseBytes(resMem); err != nil {
				return err
			}
			spec.RestartPolicy.Condition = api.RestartCondition(restart)
			spec.RestartPolicy.MaxAttempts = maxAttempts
			if c.Flags().Changed("restart-delay") {
				d, err := time.ParseDuration(restartWait)
				if err != nil {
					return fmt.Errorf("invalid --restart-delay %q: %v", restartWait, err)
				}
				spec.RestartPolicy.Delay = &d
			}
			if err := dep.apply(c.Flags(), &spec); err != nil {
				return err
			}
			if err := opts.apply(c.Flags(), &spec); err != nil {
				return err
			}
			if err := place.applyCreate(c.Flags(), &spec); err != nil {
				return err
			}
			if err := applyFileFlags(c.Flags(), &spec); err != nil {
				return err
			}
			spec.Normalize()
			if err := spec.Validate(); err != nil {
				return err
			}
			opt, err := imgFlags.options(spec.Image, c.ErrOrStderr())
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			svc, err := retryRefused(ctx, func(ctx context.Context) (api.ServiceCreateAnswer, error) {
				return cl.CreateServiceWith(ctx, spec, opt)
			})
			if err != nil {
				return err
			}
			printWarnings(c.ErrOrStderr(), svc.Warnings)
			fmt.Fprintln(c.OutOrStdout(), svc.ID)
			if detach {
				return nil
			}
			return waitConverged(ctx, cl, spec.Name, c.ErrOrStderr())
		},
	}
	f := c.Flags()
	// Everything after IMAGE belongs to the task's command, flags included (as docker does).
	f.SetInterspersed(false)
	f.StringVar(&spec.Name, "name", "", "service name (also its DNS name)")
	f.Int64Var(&replicas, "replicas", 1, "number of tasks (replicated mode)")
	f.StringVar(&mode, "mode", "replicated", "replicated, global, replicated-job or global-job (jobs run to completion)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable K=V")
	f.StringArrayVarP(&labels, "label", "l", nil, "service label K=V")
	f.StringArrayVarP(&publish, "publish", "p", nil, "publish a port: [PUBLISHED:]TARGET[/tcp|/udp], or mode=host,published=P,target=T")
	f.StringVar(&endpointMode, "endpoint-mode", "vip", "vip or dnsrr")
	f.StringArrayVar(&constraints, "constraint", nil, "placement constraint, e.g. node.labels.zone==a")
	f.StringVar(&limCPU, "limit-cpu", "", "CPU limit in cores")
	f.StringVar(&limMem, "limit-memory", "", "memory limit in bytes (k, m, g suffixes)")
	f.StringVar(&resCPU, "reserve-cpu", "", "CPU reservation in cores")
	f.StringVar(&resMem, "reserve-memory", "", "memory reservation in bytes (k, m, g suffixes)")
	f.StringVar(&restart, "restart-condition", "any", "any, on-failure or none")
	f.StringVar(&restartWait, "restart-delay", "", "fixed wait before replacing a finished task (default: at once, then a backoff after quick crashes in a row)")
	f.Uint64Var(&maxAttempts, "restart-max-attempts", 0, "give up on a slot after this many restarts (0: never)")
	f.BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for the service to converge")
	dep.register(f)
	opts.register(f, false)
	place.register(f, false)
	registerFileFlags(f, true)
	imgFlags.add(c)
	_ = c.MarkFlagRequired("name")
	return c
}

// parsePublish accepts the short form and docker's long form (mode=host,...).
func parsePublish(s string) (api.PortConfig, error) {
	if !strings.Contains(s, "=") {
		return api.ParsePort(s)
	}
	pc := api.PortConfig{Protocol: "tcp", PublishMode: api.PublishIngress}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "mode":
			pc.PublishMode = api.PublishMode(v)
		case "published":
			pc.PublishedPort, err = strconv.Atoi(v)
		case "target":
			pc.TargetPort, err = strconv.Atoi(v)
		case "protocol":
			pc.Protocol = v
		default:
			return pc, fmt.Errorf("invalid --publish %q: unknown key %q", s, k)
		}
		if err != nil {
			return pc, fmt.Errorf("invalid --publish %q: %s is not a number", s, k)
		}
	}
	if pc.TargetPort < 1 || pc.TargetPort > 65535 {
		return pc, fmt.Errorf("invalid --publish %q: target port missing or out of range", s)
	}
	return pc, nil
}

// waitConverged follows a service's tasks with blocking queries until the running
// count matches the desired count, failing with the reason when tasks are rejected
// or stay pending.
func waitConverged(ctx context.Context, cl *client.Client, name string, out io.Writer) error {
	if svc, err := cl.Service(ctx, name); err == nil && svc.Spec.Mode.IsJob() {
		return waitJob(ctx, cl, name, out) // jobwait.go: completions, not running tasks
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tty := isTerminal(out)
	lastLine := ""
	said := map[string]string{} // task -> last preparing line printed
	drawn := 0
	pendingSince := time.Time{}
	return followService(ctx, cl, name, "did not converge in time", func(tasks []api.Task, svc api.ServiceInfo) (bool, error) {
		cur := currentTasks(tasks)
		running, rejected, pending := 0, []*api.Task{}, []*api.Task{}
		for _, t := range cur {
			switch t.Status.State {
			case api.TaskRunning:
				running++
			case api.TaskRejected:
				rejected = append(rejected, t)
			case api.TaskPending:
				pending = append(pending, t)
			}
		}
		desired := int(svc.Desired)
		if tty {
			if drawn > 0 {
				fmt.Fprintf(out, "\033[%dA", drawn)
			}
			drawn = 0
			fmt.Fprintf(out, "\033[2K%s: %d/%d running\n", name, running, desired)
			drawn++
			for _, t := range cur {
				detail := t.Status.Err + t.PendingReason
				if t.Status.State == api.TaskPreparing {
					detail = t.Status.Message
				}
				fmt.Fprintf(out, "\033[2K  %s\t%-9s %s\n", taskName(t), t.Status.State, detail)
				drawn++
			}
		} else {
			for _, t := range cur {
				if l := preparingLine(t); l != "" && said[t.ID] != l {
					fmt.Fprintln(out, l)
					said[t.ID] = l
				}
			}
			if line := fmt.Sprintf("%s: %d/%d running", name, running, desired); line != lastLine {
				fmt.Fprintln(out, line)
				lastLine = line
			}
		}
		if running == desired && len(cur) == desired && (desired > 0 || svc.Spec.Mode == api.ModeReplicated) {
			fmt.Fprintf(out, "%s: converged\n", name)
			return true, nil
		}
		if len(rejected) > 0 {
			t := rejected[0]
			return false, fmt.Errorf("%s: task %s rejected: %s", name, taskName(t), firstNonEmpty(t.Status.Err, t.Status.Message))
		}
		if len(pending) > 0 {
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			} else if time.Since(pendingSince) > 15*time.Second {
				return false, fmt.Errorf("%s: %d task(s) cannot be placed: %s", name, len(pending), pending[0].PendingReason)
			}
		} else {
			pendingSince = time.Time{}
		}
		return false, nil
	})
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// currentTasks keeps the newest task of each slot (or node, for global services)
// that is meant to run.
func currentTasks(tasks []api.Task) []*api.Task {
	best := map[string]*api.Task{}
	for i := range tasks {
		t := &tasks[i]
		if t.DesiredState != api.TaskRunning {
			continue
		}
		k := strconv.FormatUint(t.Slot, 10)
		if t.Slot == 0 {
			k = t.NodeID
		}
		if b, ok := best[k]; !ok || t.CreateIndex > b.CreateIndex {
			best[k] = t
		}
	}
	out := make([]*api.Task, 0, len(best))
	for _, t := range best {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return taskName(out[i]) < taskName(out[j]) })
	return out
}

func taskName(t *api.Task) string {
	if t.Slot == 0 {
		return t.ServiceName + "." + t.NodeID
	}
	return fmt.Sprintf("%s.%d", t.ServiceName, t.Slot)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func newServiceInspect() *cobra.Command {
	return newInspect("inspect SERVICE...", "Show services in full", (*client.Client).Service)
}

func newServiceScale() *cobra.Command {
	var detach bool
	c := &cobra.Command{
		Use: "scale NAME=N [NAME=N...]", Short: "Set services' replica counts", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			type req struct {
				name string
				n    uint64
			}
			var reqs []req
			for _, a := range args {
				name, num, ok := strings.Cut(a, "=")
				n, err := strconv.ParseInt(num, 10, 64)
				if !ok || name == "" || err != nil || n < 0 {
					return fmt.Errorf("invalid scale %q: expected NAME=N with N >= 0", a)
				}
				reqs = append(reqs, req{name, uint64(n)})
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			for _, r := range reqs {
				if _, err := retryRefused(ctx, func(ctx context.Context) (api.Service, error) { return cl.ScaleService(ctx, r.name, r.n) }); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "%s scaled to %d\n", r.name, r.n)
			}
			if detach {
				return nil
			}
			for _, r := range reqs {
				if err := waitConverged(ctx, cl, r.name, c.ErrOrStderr()); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for convergence")
	return c
}

func newServiceRm() *cobra.Command {
	return &cobra.Command{
		Use: "rm SERVICE...", Short: "Remove services and stop their tasks", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			for _, a := range args {
				if _, err := retryRefused(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, cl.RemoveService(ctx, a) }); err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), a)
			}
			return nil
		},
	}
}
