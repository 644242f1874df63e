package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

const (
	// DefaultStopTimeout is the grace between SIGTERM and SIGKILL, as Docker's default.
	DefaultStopTimeout = 10 * time.Second
	// pollInterval is how often processes this instance did not start (adopted after
	// a restart, so not our children to wait for) are checked in /proc.
	pollInterval = 500 * time.Millisecond
	// errUnknownExit is the Err of a process that ended while no daemon watched it.
	errUnknownExit = "process exited while the worker was not running; exit code unknown"
)

// Engine runs each task as a child process in its own session and process group.
// Processes are not tied to the daemon: they keep running when it stops or is killed,
// and a new Engine over the same DataDir adopts them.
type Engine struct {
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL
	// (DefaultStopTimeout if zero). Set it before the first Stop.
	StopTimeout time.Duration
	// CgroupRoot is where the cgroup file systems are mounted, for tasks with
	// limits (DefaultCgroupRoot if empty). Set it before the first Start.
	CgroupRoot string

	cfg engine.Config
	log *slog.Logger
	dir string // DataDir/tasks: <task>.json records and <task>.log output

	mu       sync.Mutex
	tasks    map[string]*task
	starting map[string]bool // task IDs between Start's check and its insert
	ports    map[string]bool // "tcp/8080": host ports handed to live tasks
	subs     map[*subscriber]struct{}

	stampMu sync.Mutex       // serialises marking of logs (stamps.go)
	marked  map[string]int64 // task ID -> log size at its last mark

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// task is one process the engine knows of. rec is guarded by Engine.mu.
type task struct {
	rec  record
	done chan struct{} // closed once the process is known to have exited
	// child: started by this Engine, so a goroutine waits for it and learns the
	// exit code. Adopted processes are someone else's children: polled in /proc.
	child   bool
	removed bool // Stop removed the record: the waiter must not write it back
}

var _ engine.Engine = (*Engine)(nil)

// New opens the engine's state under cfg.DataDir and adopts the processes that a
// previous daemon started for cfg.NodeID and that still run.
func New(cfg engine.Config, logger *slog.Logger) (*Engine, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("process engine: a data dir is required")
	}
	if cfg.NodeAddr == "" {
		cfg.NodeAddr = "127.0.0.1"
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:      cfg,
		log:      logger.With("engine", "process"),
		dir:      filepath.Join(cfg.DataDir, "tasks"),
		tasks:    map[string]*task{},
		starting: map[string]bool{},
		ports:    map[string]bool{},
		subs:     map[*subscriber]struct{}{},
		marked:   map[string]int64{},
		stop:     make(chan struct{}),
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, fmt.Errorf("process engine: %w", err)
	}
	if err := e.adopt(); err != nil {
		return nil, err
	}
	e.wg.Add(2)
	go e.pollAdopted()
	go e.watchLogs()
	// Output written while no daemon watched gets its time now, before more comes.
	for id := range e.tasks {
		e.markLog(id)
	}
	return e, nil
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return "process" }

// adopt loads every record of this node: live processes are adopted, dead ones are
// reported as exited (with their exit code if the daemon that watched them saw it).
func (e *Engine) adopt() error {
	paths, err := filepath.Glob(filepath.Join(e.dir, "*.json"))
	if err != nil {
		return fmt.Errorf("process engine: list records: %w", err)
	}
	for _, path := range paths {
		rec, err := readRecord(path)
		if err != nil {
			e.log.Warn("skip unreadable task record", "path", path, "err", err)
			continue
		}
		if rec.NodeID != e.cfg.NodeID || rec.TaskID == "" {
			continue
		}
		tk := &task{rec: rec, done: make(chan struct{})}
		switch {
		case rec.Exited:
			close(tk.done)
		case alive(rec.PID, rec.StartTicks):
			for _, p := range rec.Ports {
				e.ports[portKey(p.Protocol, p.HostPort)] = true
			}
			e.log.Info("adopted running task", "task", rec.TaskID, "service", rec.ServiceName, "pid", rec.PID)
		default:
			tk.rec.Exited, tk.rec.ExitCode, tk.rec.Err, tk.rec.FinishedAt = true, -1, errUnknownExit, time.Now()
			close(tk.done)
			if err := e.writeRecord(tk.rec); err != nil {
				e.log.Warn("persist exit of task", "task", rec.TaskID, "err", err)
			}
			e.log.Info("task exited while the worker was down", "task", rec.TaskID, "pid", rec.PID)
		}
		e.tasks[rec.TaskID] = tk
	}
	e.reapUnrecorded()
	return nil
}

// Start implements engine.Engine.
func (e *Engine) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	if t == nil || t.ID == "" {
		return engine.Instance{}, errors.New("start task: no task ID")
	}
	if strings.ContainsAny(t.ID, `/\`) || t.ID == "." || t.ID == ".." {
		// The ID names files under the data dir.
		return engine.Instance{}, fmt.Errorf("start task %s: invalid task ID: %w", t.ID, engine.ErrRejected)
	}
	if err := ctx.Err(); err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	e.mu.Lock()
	if tk := e.tasks[t.ID]; tk != nil {
		// A repeated Start (say, after the worker restarted) finds the task adopted.
		inst, exited := tk.instanceLocked(), tk.rec.Exited
		e.mu.Unlock()
		if exited {
			return engine.Instance{}, fmt.Errorf("start task %s: already ran and exited (%s)", t.ID, inst.Err)
		}
		return inst, nil
	}
	if e.starting[t.ID] {
		e.mu.Unlock()
		return engine.Instance{}, fmt.Errorf("start task %s: already starting", t.ID)
	}
	e.starting[t.ID] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.starting, t.ID)
		e.mu.Unlock()
	}()

	sig, err := engine.StopSignal(t.Spec.StopSignal)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	opts, err := e.taskOptions(t)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	path, err := exec.LookPath(t.Spec.Image)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: program %q not found or not executable (PATH=%s): %w",
			t.ID, t.Spec.Image, os.Getenv("PATH"), engine.ErrRejected)
	}

	ports, err := e.allocPorts(t.Spec.Ports)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	started := false
	defer func() {
		if !started {
			e.releasePorts(ports)
		}
	}()

	env := append(append(os.Environ(), opts.env...), engine.TaskEnv(e.cfg, t)...)
	env = append(env, engine.FilesEnv(e.cfg.FilesDir, t)...)
	for i, p := range ports {
		if i == 0 {
			env = append(env, "PORT="+strconv.Itoa(p.HostPort))
		}
		env = append(env, fmt.Sprintf("PORT_%d=%d", p.TargetPort, p.HostPort))
	}

	logf, err := os.OpenFile(e.logPath(t.ID), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return engine.Instance{}, fmt.Errorf("start task %s: open log: %w", t.ID, err)
	}
	// Not CommandContext: the process must outlive the request and the daemon.
	cmd := exec.Command(path, t.Spec.Command...)
	cmd.Args[0] = t.Spec.Image
	cmd.Env = env   // exec keeps the last value of a repeated key: task values win
	cmd.Stdin = nil // /dev/null: nothing ties the process to the daemon
	// The child writes straight into the file, not through a pipe the daemon drains,
	// so it neither blocks nor gets SIGPIPE when the daemon is gone.
	cmd.Stdout, cmd.Stderr = logf, logf
	// A new session: its own process group (Stop signals the group, so grandchildren
	// go too) and no controlling terminal, so a ^C or hang-up aimed at the daemon
	// does not reach it. No Pdeathsig, on purpose.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: opts.cred}
	cmd.Dir = opts.dir
	cg, err := e.newCgroup(t, opts.limits)
	if err != nil {
		logf.Close()
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	if cg != nil {
		defer func() {
			if !started {
				cg.remove()
			}
		}()
		if err := cg.gateCmd(cmd); err != nil {
			logf.Close()
			return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, err, engine.ErrRejected)
		}
	}
	if err := e.writeIntent(t.ID); err != nil {
		logf.Close()
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	defer e.clearIntent(t.ID) // after the record is written, or after a failed start
	err = cmd.Start()
	logf.Close() // the child holds its own descriptor
	if err == nil && cg != nil {
		if aerr := cg.attach(cmd); aerr != nil {
			_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, aerr, engine.ErrRejected)
		}
	}
	if err != nil {
		if errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOENT) {
			// Not a program this machine can run: retrying here will not help.
			return engine.Instance{}, fmt.Errorf("start task %s: %v: %w", t.ID, err, engine.ErrRejected)
		}
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	pid := cmd.Process.Pid
	var ticks uint64
	if st, err := readStat(pid); err == nil {
		ticks = st.startTicks
	}
	tk := &task{
		child: true,
		done:  make(chan struct{}),
		rec: record{
			TaskID:      t.ID,
			ServiceName: t.ServiceName,
			NodeID:      e.cfg.NodeID,
			Slot:        t.Slot,
			Program:     path,
			PID:         pid,
			PGID:        pid, // Setsid makes it the leader of a new group
			StartTicks:  ticks,
			StartedAt:   time.Now(),
			Addr:        e.cfg.NodeAddr,
			Ports:       ports,
			StopSignal:  int(sig),
			StopGrace:   t.Spec.StopGracePeriod,
		},
	}
	if cg != nil {
		tk.rec.Cgroups = cg.paths
	}
	if err := e.writeRecord(tk.rec); err != nil {
		// Without a record a restarted daemon could not find the process: undo.
		_ = killGroup(pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return engine.Instance{}, fmt.Errorf("start task %s: %w", t.ID, err)
	}
	started = true
	e.mu.Lock()
	e.tasks[t.ID] = tk
	inst := tk.instanceLocked()
	e.mu.Unlock()
	e.log.Info("started task", "task", t.ID, "service", t.ServiceName, "slot", t.Slot, "pid", pid, "program", path, "ports", ports)

	go func() {
		werr := cmd.Wait()
		code, msg := exitInfo(cmd.ProcessState, werr)
		if code == 128+int(syscall.SIGKILL) && cg != nil && oomKilled(cg.paths) {
			msg = "out of memory (OOM killed)" // as Docker says it
		}
		e.finish(tk, code, msg)
	}()
	return inst, nil
}

// exitInfo turns a wait result into an exit code the way shells and Docker do:
// 128+signal for a process killed by a signal.
func exitInfo(ps *os.ProcessState, werr error) (int, string) {
	if ps == nil {
		return -1, fmt.Sprintf("wait: %v", werr)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), "killed by signal " + ws.Signal().String()
	}
	code := ps.ExitCode()
	if code != 0 {
		return code, fmt.Sprintf("exit status %d", code)
	}
	return 0, ""
}

// finish records that a task's process exited, once, and tells subscribers.
func (e *Engine) finish(tk *task, code int, msg string) {
	e.mu.Lock()
	if tk.rec.Exited {
		e.mu.Unlock()
		return
	}
	tk.rec.Exited, tk.rec.ExitCode, tk.rec.Err, tk.rec.FinishedAt = true, code, msg, time.Now()
	for _, p := range tk.rec.Ports {
		delete(e.ports, portKey(p.Protocol, p.HostPort))
	}
	rec, removed := tk.rec, tk.removed
	e.mu.Unlock()

	// Persist before closing done: Stop removes the record once done is closed, and
	// a write after that would bring a stopped task back on the next restart.
	if !removed {
		if err := e.writeRecord(rec); err != nil {
			e.log.Warn("persist exit of task", "task", rec.TaskID, "err", err)
		}
	}
	close(tk.done)
	e.log.Info("task exited", "task", rec.TaskID, "pid", rec.PID, "exit_code", code, "err", msg)
	e.notify(rec.TaskID)
}

// checkAdopted marks an adopted task exited once its process is gone. Only the
// daemon that started a process can learn its exit code; if that daemon (or another
// Engine instance in this one) wrote it to the record, use it.
func (e *Engine) checkAdopted(tk *task) {
	e.mu.Lock()
	rec, skip := tk.rec, tk.child || tk.rec.Exited
	e.mu.Unlock()
	if skip || alive(rec.PID, rec.StartTicks) {
		return
	}
	if disk, err := readRecord(e.recordPath(rec.TaskID)); err == nil && disk.Exited {
		e.finish(tk, disk.ExitCode, disk.Err)
		return
	}
	e.finish(tk, -1, errUnknownExit)
}

func (e *Engine) pollAdopted() {
	defer e.wg.Done()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		e.mu.Lock()
		var adopted []*task
		for _, tk := range e.tasks {
			if !tk.child && !tk.rec.Exited {
				adopted = append(adopted, tk)
			}
		}
		e.mu.Unlock()
		for _, tk := range adopted {
			e.checkAdopted(tk)
		}
	}
}

// Stop implements engine.Engine: the stop signal (SIGTERM unless the spec names
// another) to the process group, SIGKILL after the spec's stop grace period (else
// StopTimeout) or when ctx ends, then the record and the log are removed.
func (e *Engine) Stop(ctx context.Context, taskID string) error {
	e.mu.Lock()
	tk := e.tasks[taskID]
	e.mu.Unlock()
	if tk == nil {
		return nil
	}
	if err := e.kill(ctx, tk); err != nil {
		return fmt.Errorf("stop task %s: %w", taskID, err)
	}
	e.mu.Lock()
	tk.removed = true
	if e.tasks[taskID] == tk {
		delete(e.tasks, taskID)
	}
	cgroups := tk.rec.Cgroups
	e.mu.Unlock()
	if err := removeCgroups(cgroups); err != nil {
		e.log.Warn("task cgroup left", "task", taskID, "err", err)
	}
	for _, path := range []string{e.recordPath(taskID), e.logPath(taskID), e.stampPath(taskID)} {
		if err := os.Remove(path); err != nil && !isNotExist(err) {
			return fmt.Errorf("stop task %s: %w", taskID, err)
		}
	}
	e.forgetMarks(taskID)
	e.log.Info("stopped task", "task", taskID)
	return nil
}

// kill ends the task's process group and returns once the leader has exited.
func (e *Engine) kill(ctx context.Context, tk *task) error {
	e.mu.Lock()
	rec := tk.rec
	e.mu.Unlock()
	if rec.Exited {
		// finish may still be writing the record: let it, so that Stop's removal
		// comes after that write.
		<-tk.done
		// The leader is gone, but members of its group may linger.
		if rec.PGID > 1 && time.Since(rec.FinishedAt) < time.Minute {
			_ = killGroup(rec.PGID, syscall.SIGKILL)
		}
		return nil
	}
	// For an adopted process, check it is still the one we started before signalling:
	// a reused PID must not be killed.
	if !tk.child && !alive(rec.PID, rec.StartTicks) {
		e.checkAdopted(tk)
		return nil
	}
	grace := e.StopTimeout
	if grace <= 0 {
		grace = DefaultStopTimeout
	}
	if rec.StopGrace != nil {
		grace = *rec.StopGrace
	}
	sig := syscall.SIGTERM
	if rec.StopSignal > 0 {
		sig = syscall.Signal(rec.StopSignal)
	}
	if err := killGroup(rec.PGID, sig); err != nil {
		return err
	}
	if !e.waitExit(ctx, tk, grace) {
		e.log.Info("task outlived its stop grace period, killing", "task", rec.TaskID, "pid", rec.PID, "signal", sig, "grace", grace)
		if err := killGroup(rec.PGID, syscall.SIGKILL); err != nil {
			return err
		}
		if !e.waitExit(context.Background(), tk, 10*time.Second) {
			return fmt.Errorf("process %d did not exit after SIGKILL", rec.PID)
		}
	}
	// The leader is gone; grandchildren that handled SIGTERM may still run.
	return killGroup(rec.PGID, syscall.SIGKILL)
}

// waitExit waits up to d (or until ctx ends) for the task's process to exit.
func (e *Engine) waitExit(ctx context.Context, tk *task, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tk.done:
			return true
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
			e.checkAdopted(tk) // a no-op for our own children: their waiter closes done
		}
	}
}

// List implements engine.Engine.
func (e *Engine) List(ctx context.Context) ([]engine.Instance, error) {
	e.mu.Lock()
	var adopted []*task
	for _, tk := range e.tasks {
		if !tk.child && !tk.rec.Exited {
			adopted = append(adopted, tk)
		}
	}
	e.mu.Unlock()
	// Fresh answers for adopted processes rather than the last poll's.
	for _, tk := range adopted {
		e.checkAdopted(tk)
	}
	e.mu.Lock()
	out := make([]engine.Instance, 0, len(e.tasks))
	for _, tk := range e.tasks {
		out = append(out, tk.instanceLocked())
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b engine.Instance) int { return strings.Compare(a.TaskID, b.TaskID) })
	return out, nil
}

func (tk *task) instanceLocked() engine.Instance {
	r := tk.rec
	inst := engine.Instance{
		TaskID:      r.TaskID,
		ServiceName: r.ServiceName,
		NodeID:      r.NodeID,
		ID:          strconv.Itoa(r.PID),
		State:       api.TaskRunning,
		Addr:        r.Addr,
		HostAddr:    r.Addr,
		Ports:       slices.Clone(r.Ports),
	}
	if r.Exited {
		inst.ExitCode, inst.Err = r.ExitCode, r.Err
		inst.State = api.TaskFailed
		if r.ExitCode == 0 && r.Err == "" {
			inst.State = api.TaskComplete
		}
	}
	return inst
}

// Close implements engine.Engine. It stops watching; the processes keep running.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() { close(e.stop) })
	e.wg.Wait()
	return nil
}

func portKey(proto string, port int) string {
	if proto == "" {
		proto = "tcp"
	}
	return proto + "/" + strconv.Itoa(port)
}

// allocPorts gives each port of the spec a host port: the published port in host
// mode, else a free one on the node address (ingress ports are published by the
// load balancer, which forwards to this host port).
func (e *Engine) allocPorts(spec []api.PortConfig) ([]api.PortBinding, error) {
	var out []api.PortBinding
	for _, pc := range spec {
		proto := pc.Protocol
		if proto == "" {
			proto = "tcp"
		}
		b := api.PortBinding{Protocol: proto, TargetPort: pc.TargetPort}
		if pc.PublishMode == api.PublishHost && pc.PublishedPort > 0 {
			b.HostPort = pc.PublishedPort
			e.mu.Lock()
			e.ports[portKey(proto, b.HostPort)] = true
			e.mu.Unlock()
		} else {
			p, err := e.freePort(proto)
			if err != nil {
				e.releasePorts(out)
				return nil, err
			}
			b.HostPort = p
		}
		out = append(out, b)
	}
	return out, nil
}

func (e *Engine) releasePorts(ports []api.PortBinding) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range ports {
		delete(e.ports, portKey(p.Protocol, p.HostPort))
	}
}

// freePort finds a port free on every address of the host and reserves it, so that
// two tasks started at once are not handed the same one before either binds it.
//
// It picks from below the kernel's ephemeral range (see portRange): a port in that
// range could be taken, between this check and the task's bind, by the local end of
// any outgoing connection or by Docker's port allocator, which draws from the same
// range. Probing the wildcard address also catches listeners on other addresses, so
// a task may bind either its node address or all of them.
func (e *Engine) freePort(proto string) (int, error) {
	lo, hi := portRange()
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		key := portKey(proto, port)
		e.mu.Lock()
		taken := e.ports[key]
		e.mu.Unlock()
		if taken || !portFree(proto, port) {
			continue
		}
		e.mu.Lock()
		if !e.ports[key] {
			e.ports[key] = true
			e.mu.Unlock()
			return port, nil
		}
		e.mu.Unlock()
	}
	return 0, fmt.Errorf("find a free %s port in %d-%d: all tries were taken", proto, lo, hi-1)
}

func portFree(proto string, port int) bool {
	addr := ":" + strconv.Itoa(port)
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// portRange is [lo, hi) for task ports: the 12,000 ports below the ephemeral range
// (32768-60999 on Linux by default, so 20768-32767), or 20000-29999 if that range
// cannot be read or starts too low to leave room.
func portRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low >= 13024 {
				return low - 12000, low
			}
		}
	}
	return 20000, 30000
}
