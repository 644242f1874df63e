package main

import (
	"context"
	"errors"
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
	c.AddCommand(newServiceCreate(), newServiceLs(), newServicePs(), newServiceInspect(), newServiceScale(), newServiceRm(), newServiceLogs())
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
			if spec.RestartPolicy.Delay, err = time.ParseDuration(restartWait); err != nil {
				return fmt.Errorf("invalid --restart-delay %q: %v", restartWait, err)
			}
			spec.Normalize()
			if err := spec.Validate(); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			svc, err := retryRefused(ctx, func(ctx context.Context) (api.Service, error) { return cl.CreateService(ctx, spec) })
			if err != nil {
				return err
			}
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
	f.StringVar(&mode, "mode", "replicated", "replicated or global")
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
	f.StringVar(&restartWait, "restart-delay", "5s", "wait before replacing a finished task (docker's default)")
	f.Uint64Var(&maxAttempts, "restart-max-attempts", 0, "give up on a slot after this many restarts (0: never)")
	f.BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for the service to converge")
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
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tty := isTerminal(out)
	var index uint64
	lastLine := ""
	drawn := 0
	pendingSince := time.Time{}
	for {
		tasks, idx, err := cl.Tasks(ctx, name, index, 5*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s did not converge in time: %w", name, ctx.Err())
			}
			if errors.Is(err, api.ErrNotFound) {
				return err
			}
			time.Sleep(200 * time.Millisecond) // a leader change: retry the read
			index = 0
			continue
		}
		index = idx
		svc, err := cl.Service(ctx, name)
		if err != nil {
			return err
		}
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
				fmt.Fprintf(out, "\033[2K  %s\t%-9s %s\n", taskName(t), t.Status.State, t.Status.Err+t.PendingReason)
				drawn++
			}
		} else if line := fmt.Sprintf("%s: %d/%d running", name, running, desired); line != lastLine {
			fmt.Fprintln(out, line)
			lastLine = line
		}
		if running == desired && len(cur) == desired && (desired > 0 || svc.Spec.Mode == api.ModeReplicated) {
			fmt.Fprintf(out, "%s: converged\n", name)
			return nil
		}
		if len(rejected) > 0 {
			t := rejected[0]
			return fmt.Errorf("%s: task %s rejected: %s", name, taskName(t), firstNonEmpty(t.Status.Err, t.Status.Message))
		}
		if len(pending) > 0 {
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			} else if time.Since(pendingSince) > 15*time.Second {
				return fmt.Errorf("%s: %d task(s) cannot be placed: %s", name, len(pending), pending[0].PendingReason)
			}
		} else {
			pendingSince = time.Time{}
		}
	}
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

type serviceRow struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Mode     string   `json:"mode"`
	Replicas string   `json:"replicas"`
	Image    string   `json:"image"`
	Ports    string   `json:"ports"`
	Running  int      `json:"running"`
	Desired  uint64   `json:"desired"`
	VIP      string   `json:"vip,omitempty"`
	PortList []string `json:"port_list,omitempty"`
}

func portsString(ps []api.PortConfig) []string {
	var out []string
	for _, p := range ps {
		if p.PublishedPort > 0 {
			out = append(out, fmt.Sprintf("*:%d->%d/%s", p.PublishedPort, p.TargetPort, p.Protocol))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.TargetPort, p.Protocol))
		}
	}
	return out
}

func newServiceLs() *cobra.Command {
	l := listing[serviceRow]{
		header: "ID\tNAME\tMODE\tREPLICAS\tIMAGE\tPORTS",
		id:     func(r serviceRow) string { return r.ID },
		line: func(r serviceRow) string {
			return strings.Join([]string{r.ID, r.Name, r.Mode, r.Replicas, r.Image, r.Ports}, "\t")
		},
	}
	c := &cobra.Command{
		Use: "ls", Short: "List services", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkFormat(l.format); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			svcs, _, err := cl.Services(ctx)
			if err != nil {
				return err
			}
			rows := make([]serviceRow, 0, len(svcs))
			for _, s := range svcs {
				ports := portsString(s.Ports)
				rows = append(rows, serviceRow{ID: s.ID, Name: s.Spec.Name, Mode: string(s.Spec.Mode), Replicas: fmt.Sprintf("%d/%d", s.Running, s.Desired),
					Image: s.Spec.Image, Ports: strings.Join(ports, ","), Running: s.Running, Desired: s.Desired, VIP: s.VIP, PortList: ports})
			}
			return l.print(c.OutOrStdout(), rows)
		},
	}
	l.flags(c, "IDs")
	return c
}

type taskRow struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Node    string `json:"node"`
	Desired string `json:"desired"`
	Current string `json:"current"`
	Error   string `json:"error"`
	Service string `json:"service"`
	Slot    uint64 `json:"slot"`
	Since   string `json:"since,omitempty"`
	Ports   string `json:"ports,omitempty"`
	Addr    string `json:"addr,omitempty"` // where the task answers: its container's address, or its node's
}

func newServicePs() *cobra.Command {
	var all bool
	hostname := map[string]string{}
	l := listing[taskRow]{
		header: "ID\tNAME\tNODE\tDESIRED\tCURRENT\tERROR",
		id:     func(r taskRow) string { return r.ID },
		line: func(r taskRow) string {
			n := hostname[r.Node]
			if n == "" {
				n = r.Node
			}
			return strings.Join([]string{r.ID, r.Name, n, r.Desired, r.Current, r.Error}, "\t")
		},
	}
	c := &cobra.Command{
		Use: "ps [-q] [--format json] [--all] SERVICE", Short: "List a service's tasks", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkFormat(l.format); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			tasks, _, err := cl.Tasks(ctx, args[0], 0, 0)
			if err != nil {
				return err
			}
			nodes, _, _ := cl.Nodes(ctx)
			for _, n := range nodes {
				hostname[n.ID] = n.Hostname
			}
			var rows []taskRow
			for _, t := range tasks {
				if !all && t.DesiredState != api.TaskRunning && t.Status.State.Terminal() {
					continue
				}
				errText := t.Status.Err
				if t.Status.State == api.TaskPending {
					errText = t.PendingReason
				}
				var ports []string
				for _, p := range t.Status.Ports {
					ports = append(ports, fmt.Sprintf("%d->%d/%s", p.HostPort, p.TargetPort, p.Protocol))
				}
				rows = append(rows, taskRow{ID: t.ID, Name: taskName(&t), Node: t.NodeID, Desired: t.DesiredState.String(), Current: t.Status.State.String(),
					Error: errText, Service: t.ServiceName, Slot: t.Slot, Since: t.Status.Timestamp.Format(time.RFC3339Nano), Ports: strings.Join(ports, ","), Addr: t.Status.Addr})
			}
			return l.print(c.OutOrStdout(), rows)
		},
	}
	l.flags(c, "task IDs")
	c.Flags().BoolVarP(&all, "all", "a", false, "include finished tasks (history)")
	return c
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

func newServiceLogs() *cobra.Command {
	var follow bool
	var tail int
	c := &cobra.Command{
		Use: "logs [--follow] [--tail N] SERVICE", Short: "Show a service's task output", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client.New(g.host, client.Options{Timeout: -1})
			if err != nil {
				return err
			}
			ctx, cancel := cmdContext()
			defer cancel()
			return cl.Logs(ctx, args[0], follow, tail, c.OutOrStdout())
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep following new output")
	c.Flags().IntVarP(&tail, "tail", "n", 0, "only the last N lines of each task (0: all)")
	return c
}
