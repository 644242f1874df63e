package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// DefaultStopTimeout is the grace between SIGTERM and SIGKILL, as Docker's own default.
const DefaultStopTimeout = 10 * time.Second

// Engine runs each task as a container on the local Docker engine (default bridge
// network). Containers carry the engine.Label* labels; every query filters on this
// node's ID, because several nodes may share one Docker engine. Start never pulls:
// the worker prepares the image first (images.go, node/images).
type Engine struct {
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL
	// (DefaultStopTimeout if zero). Set it before the first Stop.
	StopTimeout time.Duration

	cfg engine.Config
	log *slog.Logger
	cli *client.Client
	dns string // IP given to containers as their DNS server, "" for Docker's default
	net netState
	// NetworkWait bounds how long Start waits for the first SetNetwork
	// (DefaultNetworkWait if zero); set it before the first Start.
	NetworkWait time.Duration
	// exits: containers the event stream said died, which the list may still
	// show running (exits.go).
	exits exits
}

// DefaultNetworkWait is how long a Start waits for the node's container
// network: the node sets it up from its first session answer, right before
// its first tasks start.
const DefaultNetworkWait = 20 * time.Second

var _ engine.Engine = (*Engine)(nil)

func newClient() (*client.Client, error) {
	// The engine may be older than the client (Docker 20.10 speaks API 1.41).
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// Available reports whether a Docker engine answers a ping within about a second,
// for `--engine auto`.
func Available(ctx context.Context) bool {
	cli, err := newClient()
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = cli.Ping(ctx)
	return err == nil
}

// New connects to the Docker engine named by the environment (DOCKER_HOST, else the
// default socket) and fails if it does not answer.
func New(cfg engine.Config, logger *slog.Logger) (*Engine, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cli, err := newClient()
	if err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	// Negotiate now, before any concurrent use: the client negotiates lazily on the
	// first request, but Events reads the version without that step, racing with it.
	cli.NegotiateAPIVersion(ctx)
	e := &Engine{
		cfg: cfg,
		log: logger.With("engine", "docker"),
		cli: cli,
	}
	e.dns = containerDNS(cfg.DNS, e.log)
	return e, nil
}

// containerDNS picks the address to give containers as their resolver. Docker's
// --dns takes an IP only, so the node's DNS server must listen on port 53; and a
// loopback address would be the container's own loopback. In both cases containers
// keep Docker's default resolver (they still get SWARMLET_DNS) rather than one that
// cannot answer.
func containerDNS(dns string, log *slog.Logger) string {
	if dns == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(dns)
	if err != nil {
		host, port = dns, "53"
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		log.Warn("containers keep Docker's resolver: DNS address is not an IP", "dns", dns)
		return ""
	case port != "53":
		log.Warn("containers keep Docker's resolver: Docker can only point them at port 53", "dns", dns)
		return ""
	case ip.IsLoopback():
		log.Warn("containers keep Docker's resolver: a loopback DNS address is unreachable from a container", "dns", dns)
		return ""
	}
	return ip.String()
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return "docker" }

// ContainerName is the name a task's container gets: swarmlet-SERVICE.SLOT.TASK,
// which reads like Docker Swarm's and is unique because the task ID is.
func ContainerName(t *api.Task) string {
	return fmt.Sprintf("swarmlet-%s.%d.%s", t.ServiceName, t.Slot, t.ID)
}

func (e *Engine) stopTimeout() time.Duration {
	if e.StopTimeout > 0 {
		return e.StopTimeout
	}
	return DefaultStopTimeout
}

// Start implements engine.Engine.
func (e *Engine) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	return e.start(ctx, t, true)
}

// start starts t. The node's network is made once, when the node learns its
// subnet; if it is gone since (an operator's `docker network prune` removes it
// while no task uses it), Docker says so only at the container's start: the
// network is then made again and, when remake is set, the start tried once more
// rather than every task after that being rejected.
func (e *Engine) start(ctx context.Context, t *api.Task, remake bool) (engine.Instance, error) {
	if t == nil || t.ID == "" {
		return engine.Instance{}, errors.New("start task: no task ID")
	}
	labels := maps.Clone(t.Spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, engine.Labels(e.cfg, t)) // ours win over the user's

	exposed := nat.PortSet{}
	bindings := nat.PortMap{}
	for _, p := range t.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := nat.NewPort(proto, strconv.Itoa(p.TargetPort))
		if err != nil {
			return engine.Instance{}, fmt.Errorf("start task %s: port %d/%s: %v: %w", t.ID, p.TargetPort, proto, err, engine.ErrRejected)
		}
		exposed[port] = struct{}{}
		host := "" // Docker picks a free one; read back after start
		if p.PublishMode == api.PublishHost && p.PublishedPort > 0 {
			host = strconv.Itoa(p.PublishedPort)
		}
		bindings[port] = append(bindings[port], nat.PortBinding{HostIP: e.cfg.NodeAddr, HostPort: host})
	}
	config := &container.Config{
		Image:        engine.RunImage(t.Spec),
		Cmd:          t.Spec.Command,
		Env:          engine.TaskEnv(e.cfg, t),
		Labels:       labels,
		ExposedPorts: exposed,
		Healthcheck:  healthConfig(t.Spec.Health),
		StopSignal:   t.Spec.StopSignal,
	}
	if g := t.Spec.StopGracePeriod; g != nil {
		// Docker's own stop (docker stop, a daemon shutdown) waits as long as ours.
		secs := int(g.Round(time.Second) / time.Second)
		config.StopTimeout = &secs
		labels[engine.LabelStopGrace] = g.String()
	}
	hostConfig := &container.HostConfig{
		PortBindings: bindings,
		Resources: container.Resources{
			NanoCPUs: t.Spec.Limits.NanoCPUs,
			Memory:   t.Spec.Limits.MemoryBytes,
		},
	}
	hostConfig.Mounts = append(hostConfig.Mounts, fileMounts(e.cfg.FilesDir, t)...)
	wait := e.NetworkWait
	if wait <= 0 {
		wait = DefaultNetworkWait
	}
	cn, err := e.net.current(ctx, wait)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	mode, endpoints, dns, search := e.attach(cn)
	var netConfig *network.NetworkingConfig
	if mode != "" {
		hostConfig.NetworkMode = container.NetworkMode(mode)
		netConfig = &network.NetworkingConfig{EndpointsConfig: endpoints}
	}
	switch {
	case len(dns) > 0:
		hostConfig.DNS, hostConfig.DNSSearch = dns, search
	case e.dns != "":
		hostConfig.DNS = []string{e.dns}
	}
	if err := e.applyOptions(ctx, t, config, hostConfig); err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	name := ContainerName(t)

	resp, err := e.cli.ContainerCreate(ctx, config, hostConfig, netConfig, nil, name)
	if cerrdefs.IsConflict(err) {
		// The name is taken: Start was called before for this task (a worker restart).
		if inst, ok, ierr := e.existing(ctx, name, t.ID); ierr != nil {
			return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, ierr)
		} else if ok {
			return inst, nil
		}
		resp, err = e.cli.ContainerCreate(ctx, config, hostConfig, netConfig, nil, name)
	}
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			// "No such image: X": preparing (node/images) did not get it here.
			return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, err, engine.ErrRejected)
		}
		if cerrdefs.IsInvalidArgument(err) || bindSourceMissing(err) {
			return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, err, engine.ErrRejected)
		}
		return engine.Instance{}, fmt.Errorf("start task %s: create container: %w", t.ID, err)
	}
	if err := e.cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		// A container that never started is of no use: remove it, even if ctx ended.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if rerr := e.cli.ContainerRemove(rmCtx, resp.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			e.log.Warn("remove container that failed to start", "task", t.ID, "container", resp.ID, "err", rerr)
		}
		cancel()
		if remake && cn.Name != "" && strings.Contains(err.Error(), "network "+cn.Name+" not found") {
			e.log.Warn("container network is gone; making it again", "network", cn.Name)
			if nerr := e.SetNetwork(ctx, cn); nerr != nil {
				return engine.Instance{}, fmt.Errorf("start task %s: %w (and making the network again: %w)", t.ID, err, nerr)
			}
			return e.start(ctx, t, false)
		}
		if startRejected(err) {
			return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, err, engine.ErrRejected)
		}
		return engine.Instance{}, fmt.Errorf("start task %s: start container: %w", t.ID, err)
	}
	// Read back the host ports Docker chose and the container's address.
	info, err := e.cli.ContainerInspect(ctx, resp.ID)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: inspect container: %w", t.ID, err)
	}
	inst := e.instanceFromInspect(info)
	e.log.Info("started task", "task", t.ID, "service", t.ServiceName, "slot", t.Slot,
		"container", shortID(resp.ID), "image", t.Spec.Image, "addr", inst.Addr, "ports", inst.Ports)
	return inst, nil
}

// existing looks at the container already named for this task. A running one is the
// answer to a repeated Start; anything else (created but never started, exited) is
// removed so that Start can create it afresh.
func (e *Engine) existing(ctx context.Context, name, taskID string) (engine.Instance, bool, error) {
	info, err := e.cli.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return engine.Instance{}, false, nil
	}
	if err != nil {
		return engine.Instance{}, false, fmt.Errorf("inspect container %s: %w", name, err)
	}
	inst := e.instanceFromInspect(info)
	if inst.TaskID == taskID && inst.NodeID == e.cfg.NodeID && inst.State == api.TaskRunning {
		return inst, true, nil
	}
	if inst.NodeID != e.cfg.NodeID {
		return engine.Instance{}, false, fmt.Errorf("container %s belongs to node %q", name, inst.NodeID)
	}
	if err := e.cli.ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return engine.Instance{}, false, fmt.Errorf("remove stale container %s: %w", name, err)
	}
	return engine.Instance{}, false, nil
}

// healthConfig is Docker's HEALTHCHECK for the spec's health check: nil keeps the
// image's own; given intervals without a test override the image's; Disable turns
// every check off (--no-healthcheck). HTTP and TCP checks are the worker's.
func healthConfig(h *api.HealthCheck) *container.HealthConfig {
	if h == nil {
		return nil
	}
	if h.Disable {
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	if len(h.Test) == 0 && h.WorkerChecks() {
		return nil // the settings are for the worker's check
	}
	if len(h.Test) == 0 && h.Interval == 0 && h.Timeout == 0 && h.StartPeriod == 0 && h.Retries == 0 {
		return nil
	}
	return &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
}

// RunsHealthCommands implements engine.CommandHealth: Docker runs HEALTHCHECK.
func (e *Engine) RunsHealthCommands() bool { return true }

// healthOf reads a container's health from its list status ("Up 3 seconds
// (healthy)"), which is what `docker ps` shows, without an inspect per container.
func healthOf(status string) api.Health {
	switch {
	case strings.HasSuffix(status, "(health: starting)"):
		return api.HealthStarting
	case strings.HasSuffix(status, "(unhealthy)"):
		return api.HealthUnhealthy
	case strings.HasSuffix(status, "(healthy)"):
		return api.HealthHealthy
	}
	return ""
}

// startRejected tells a container that cannot start here (its command does not
// exist or cannot run) from a passing failure (a port in use, a busy engine).
func startRejected(err error) bool {
	if cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotFound(err) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "executable file not found") ||
		strings.Contains(msg, "no such file or directory") ||
		strings.Contains(msg, "permission denied") && strings.Contains(msg, "exec")
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (e *Engine) nodeFilter(extra ...filters.KeyValuePair) filters.Args {
	args := filters.NewArgs(filters.Arg("label", engine.LabelNode+"="+e.cfg.NodeID))
	for _, kv := range extra {
		args.Add(kv.Key, kv.Value)
	}
	return args
}

// Stop implements engine.Engine: the stop signal (SIGTERM unless the spec named
// another), SIGKILL after the task's stop grace period (else StopTimeout), then
// removal.
func (e *Engine) Stop(ctx context.Context, taskID string) error {
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: e.nodeFilter(filters.Arg("label", engine.LabelTask+"="+taskID)),
	})
	if err != nil {
		return fmt.Errorf("stop task %s: list containers: %w", taskID, err)
	}
	for _, c := range cs {
		if c.State == container.StateRunning || c.State == container.StatePaused || c.State == container.StateRestarting {
			grace := e.stopTimeout()
			if g, err := time.ParseDuration(c.Labels[engine.LabelStopGrace]); err == nil {
				grace = g // the task's own, from its spec
			}
			secs := int(grace.Round(time.Second) / time.Second)
			if err := e.cli.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
				// Removal with force kills it anyway; say why the grace was lost.
				e.log.Warn("graceful stop failed", "task", taskID, "container", shortID(c.ID), "err", err)
			}
		}
		// Another stop of the same task (a reconcile racing a leave) may be
		// removing it already: wait for that removal, so that a caller who goes
		// on to remove the node's network finds the container gone.
		// RemoveVolumes takes the task's anonymous volumes (a --mount without a
		// source) with it; named volumes stay, as with Docker's own services.
		err := e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && strings.Contains(err.Error(), "already in progress") {
			err = e.waitGone(ctx, c.ID)
		}
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("stop task %s: remove container %s: %w", taskID, shortID(c.ID), err)
		}
		e.log.Info("stopped task", "task", taskID, "container", shortID(c.ID))
	}
	return nil
}

// List implements engine.Engine. Running containers are described from the list
// itself; exited ones are inspected for their exit code and error.
func (e *Engine) List(ctx context.Context) ([]engine.Instance, error) {
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: e.nodeFilter()})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]engine.Instance, 0, len(cs))
	running := map[string]bool{}
	for _, c := range cs {
		if c.Labels[engine.LabelTask] == "" {
			continue
		}
		switch c.State {
		case container.StateRunning, container.StatePaused, container.StateRestarting:
			running[c.ID] = true
			in := e.instanceFromSummary(c)
			if died, ok := e.exits.exited(c, in); ok {
				in = died // the list has not caught up with its die event yet
			}
			out = append(out, in)
		default:
			info, err := e.cli.ContainerInspect(ctx, c.ID)
			if cerrdefs.IsNotFound(err) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("list containers: inspect %s: %w", shortID(c.ID), err)
			}
			out = append(out, e.instanceFromInspect(info))
		}
	}
	if err := e.notShuttingDown(ctx, out); err != nil {
		return nil, err
	}
	e.exits.forget(running)
	slices.SortFunc(out, func(a, b engine.Instance) int { return strings.Compare(a.TaskID, b.TaskID) })
	return out, nil
}

func baseInstance(id string, labels map[string]string) engine.Instance {
	return engine.Instance{
		TaskID:      labels[engine.LabelTask],
		ServiceName: labels[engine.LabelService],
		NodeID:      labels[engine.LabelNode],
		ID:          id,
	}
}

func (e *Engine) instanceFromSummary(c container.Summary) engine.Instance {
	inst := baseInstance(c.ID, c.Labels)
	inst.HostAddr = e.cfg.NodeAddr
	inst.State = api.TaskRunning
	inst.Health = healthOf(c.Status)
	inst.ImageID = c.ImageID
	if c.NetworkSettings != nil {
		inst.Addr = networkIP(c.NetworkSettings.Networks, e.networkName())
	}
	seen := map[api.PortBinding]bool{}
	for _, p := range c.Ports {
		if p.PublicPort == 0 {
			continue // exposed but not published
		}
		b := api.PortBinding{Protocol: p.Type, TargetPort: int(p.PrivatePort), HostPort: int(p.PublicPort)}
		if !seen[b] { // one entry per address family otherwise
			seen[b] = true
			inst.Ports = append(inst.Ports, b)
		}
	}
	sortPorts(inst.Ports)
	return inst
}

func (e *Engine) instanceFromInspect(info container.InspectResponse) engine.Instance {
	var labels map[string]string
	if info.Config != nil {
		labels = info.Config.Labels
	}
	inst := baseInstance(info.ID, labels)
	inst.HostAddr = e.cfg.NodeAddr
	if info.ContainerJSONBase != nil {
		inst.ImageID = info.Image
	}
	if info.NetworkSettings != nil {
		inst.Addr = networkIP(info.NetworkSettings.Networks, e.networkName())
		seen := map[api.PortBinding]bool{}
		for port, bs := range info.NetworkSettings.Ports {
			for _, pb := range bs {
				hp, err := strconv.Atoi(pb.HostPort)
				if err != nil || hp == 0 {
					continue
				}
				b := api.PortBinding{Protocol: port.Proto(), TargetPort: port.Int(), HostPort: hp}
				if !seen[b] {
					seen[b] = true
					inst.Ports = append(inst.Ports, b)
				}
			}
		}
		sortPorts(inst.Ports)
	}
	if info.ContainerJSONBase == nil || info.State == nil {
		inst.State = api.TaskFailed
		inst.Err = "container state unknown"
		return inst
	}
	st := info.State
	switch st.Status {
	case container.StateRunning, container.StatePaused, container.StateRestarting:
		inst.State = api.TaskRunning
		if st.Health != nil {
			inst.Health = dockerHealth(st.Health.Status)
		}
	case container.StateCreated:
		// Between create and start, or left so by a worker that died in between;
		// Start removes and recreates such a container.
		inst.State = api.TaskStarting
	default: // exited, dead, removing
		inst.ExitCode = st.ExitCode
		switch {
		case st.OOMKilled:
			inst.Err = "out of memory (OOM killed)"
		case st.Error != "":
			inst.Err = st.Error
		case st.ExitCode != 0:
			inst.Err = fmt.Sprintf("exit status %d", st.ExitCode)
		}
		inst.State = api.TaskComplete
		if inst.Err != "" {
			inst.State = api.TaskFailed
		}
	}
	return inst
}

func dockerHealth(s string) api.Health {
	switch s {
	case container.Starting:
		return api.HealthStarting
	case container.Healthy:
		return api.HealthHealthy
	case container.Unhealthy:
		return api.HealthUnhealthy
	}
	return ""
}

// networkIP is the container's address: on the node's network (ours) if it
// is there, then on the default bridge, else on the first network by name (a
// stable choice).
func networkIP(nets map[string]*network.EndpointSettings, ours string) string {
	for _, name := range []string{ours, "bridge"} {
		if n := nets[name]; name != "" && n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	for _, name := range slices.Sorted(maps.Keys(nets)) {
		if n := nets[name]; n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}

func sortPorts(ps []api.PortBinding) {
	slices.SortFunc(ps, func(a, b api.PortBinding) int {
		if a.TargetPort != b.TargetPort {
			return a.TargetPort - b.TargetPort
		}
		if a.Protocol != b.Protocol {
			return strings.Compare(a.Protocol, b.Protocol)
		}
		return a.HostPort - b.HostPort
	})
}

// Changes implements engine.Engine from the Docker event stream: die, oom and
// destroy of this node's containers. A broken stream is reopened from the time of
// the last event seen, so nothing is missed across the gap.
func (e *Engine) Changes(ctx context.Context) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		since := time.Now()
		for ctx.Err() == nil {
			opts := events.ListOptions{
				Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
				Filters: e.nodeFilter(
					filters.Arg("type", string(events.ContainerEventType)),
					filters.Arg("event", string(events.ActionDie)),
					filters.Arg("event", string(events.ActionOOM)),
					filters.Arg("event", string(events.ActionDestroy)),
					// "health_status: healthy" and friends: Docker matches the part
					// before the colon.
					filters.Arg("event", string(events.ActionHealthStatus)),
				),
			}
			sctx, cancel := context.WithCancel(ctx)
			msgs, errs := e.cli.Events(sctx, opts)
			err := e.forward(ctx, msgs, errs, out, &since)
			cancel()
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("docker event stream broke, reconnecting", "err", err)
			select {
			case out <- "": // the engine may have gone away: the worker looks now
			case <-ctx.Done():
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return out
}

// forward copies task IDs from one event stream to out until the stream fails.
func (e *Engine) forward(ctx context.Context, msgs <-chan events.Message, errs <-chan error, out chan<- string, since *time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return err
		case m := <-msgs:
			if m.TimeNano != 0 {
				*since = time.Unix(0, m.TimeNano)
			}
			e.exits.heard(m)
			id := m.Actor.Attributes[engine.LabelTask]
			if id == "" {
				continue
			}
			select {
			case out <- id:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// Logs implements engine.Engine. Tail > 0 starts at the last Tail lines, else at the
// beginning; Since and Timestamps are Docker's own. With Follow it copies until
// ctx ends or the container stops.
func (e *Engine) Logs(ctx context.Context, taskID string, opt engine.LogOptions, w io.Writer) error {
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: e.nodeFilter(filters.Arg("label", engine.LabelTask+"="+taskID)),
	})
	if err != nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	if len(cs) == 0 {
		return fmt.Errorf("logs of task %s: no such task", taskID)
	}
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: opt.Follow, Tail: "all", Timestamps: opt.Timestamps}
	if opt.Tail > 0 {
		opts.Tail = strconv.Itoa(opt.Tail)
	}
	if !opt.Since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", opt.Since.Unix(), opt.Since.Nanosecond())
	}
	rc, err := e.cli.ContainerLogs(ctx, cs[0].ID, opts)
	if err != nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	defer rc.Close()
	// Containers run without a TTY, so the stream is multiplexed stdout/stderr.
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	return nil
}

// Close implements engine.Engine. Containers keep running.
func (e *Engine) Close() error {
	return e.cli.Close()
}

// waitGone waits (10 s at most) until a container being removed is gone.
func (e *Engine) waitGone(ctx context.Context, id string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.cli.ContainerInspect(ctx, id)
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("container %s is still being removed", shortID(id))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
