package api

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"time"
)

// Deployments: how a spec change rolls out (UpdateConfig), what the rollout has
// reached (UpdateStatus), and the health checks that decide when a new task counts.

// FailureAction is what a rolling update does when new tasks fail.
type FailureAction string

const (
	FailurePause    FailureAction = "pause"
	FailureContinue FailureAction = "continue"
	FailureRollback FailureAction = "rollback"
)

// UpdateOrder: stop-first stops a slot's old task before its new one starts;
// start-first starts the new one and stops the old once the new one serves.
type UpdateOrder string

const (
	OrderStopFirst  UpdateOrder = "stop-first"
	OrderStartFirst UpdateOrder = "start-first"
)

// UpdateConfig says how a spec change (or a rollback) rolls out, as Docker's.
type UpdateConfig struct {
	// Parallelism is how many slots are updated at once; 0 means all of them.
	Parallelism int64 `json:"parallelism"`
	// Delay is the wait after a batch of slots is done before the next starts.
	Delay time.Duration `json:"delay"`
	// FailureAction applies when the failure ratio is exceeded.
	FailureAction FailureAction `json:"failure_action"`
	// Monitor is how long after it starts a new task's failure counts against
	// the update.
	Monitor time.Duration `json:"monitor"`
	// MaxFailureRatio is the share of slots that may fail before FailureAction.
	MaxFailureRatio float64     `json:"max_failure_ratio"`
	Order           UpdateOrder `json:"order"`
}

// DefaultUpdateConfig is Docker's: one slot at a time, no delay, pause on the
// first failure seen within 5 s of a task's start, stop-first.
func DefaultUpdateConfig() UpdateConfig {
	return UpdateConfig{Parallelism: 1, FailureAction: FailurePause, Monitor: 5 * time.Second, Order: OrderStopFirst}
}

// DefaultStopGracePeriod is the wait between the stop signal and a kill, as Docker's.
const DefaultStopGracePeriod = 10 * time.Second

func (c UpdateConfig) validate(flag string) error {
	if c.Parallelism < 0 {
		return fmt.Errorf("invalid --%s-parallelism %d: must be 0 (all at once) or more", flag, c.Parallelism)
	}
	if c.Delay < 0 {
		return fmt.Errorf("invalid --%s-delay %s: cannot be negative", flag, c.Delay)
	}
	if c.Monitor < 0 {
		return fmt.Errorf("invalid --%s-monitor %s: cannot be negative", flag, c.Monitor)
	}
	if c.MaxFailureRatio < 0 || c.MaxFailureRatio > 1 || c.MaxFailureRatio != c.MaxFailureRatio {
		return fmt.Errorf("invalid --%s-max-failure-ratio %g: must be between 0 and 1", flag, c.MaxFailureRatio)
	}
	switch c.FailureAction {
	case FailurePause, FailureContinue, FailureRollback:
	default:
		return fmt.Errorf("invalid --%s-failure-action %q: use pause, continue or rollback", flag, c.FailureAction)
	}
	switch c.Order {
	case OrderStopFirst, OrderStartFirst:
	default:
		return fmt.Errorf("invalid --%s-order %q: use stop-first or start-first", flag, c.Order)
	}
	return nil
}

// Health is a task's health as its checks last saw it.
type Health string

const (
	HealthNone      Health = "none" // the task has no health check
	HealthStarting  Health = "starting"
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
)

// HealthCheck is Docker's HEALTHCHECK plus checks the worker runs itself for any
// engine (as Nomad's): an HTTP GET of HTTPPath, or a TCP connect, on Port.
type HealthCheck struct {
	// Test is Docker's: ["CMD", prog, args...], ["CMD-SHELL", command], or
	// ["NONE"]; empty keeps the image's own check.
	Test []string `json:"test,omitempty"`
	// HTTPPath, if set, is fetched from the task on Port: 2xx and 3xx are healthy.
	HTTPPath string `json:"http_path,omitempty"`
	// TCP: a connection to the task's Port must succeed.
	TCP bool `json:"tcp,omitempty"`
	// Port is the task's target port the HTTP and TCP checks use (0: the first
	// published target port).
	Port        int           `json:"port,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`     // 0: 30 s (Docker's)
	Timeout     time.Duration `json:"timeout,omitempty"`      // 0: 30 s
	StartPeriod time.Duration `json:"start_period,omitempty"` // failures within it do not count
	Retries     int           `json:"retries,omitempty"`      // failures in a row that make it unhealthy; 0: 3
	// Disable turns off every check, the image's too (--no-healthcheck).
	Disable bool `json:"disable,omitempty"`
}

// Docker's health check defaults.
const (
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 3
)

// WorkerChecks reports whether the worker runs an HTTP or TCP check for the task.
func (h *HealthCheck) WorkerChecks() bool {
	return h != nil && !h.Disable && (h.HTTPPath != "" || h.TCP)
}

// Effective returns interval, timeout and retries with the defaults filled in.
func (h *HealthCheck) Effective() (interval, timeout time.Duration, retries int) {
	interval, timeout, retries = h.Interval, h.Timeout, h.Retries
	if interval <= 0 {
		interval = DefaultHealthInterval
	}
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	if retries <= 0 {
		retries = DefaultHealthRetries
	}
	return interval, timeout, retries
}

// CheckPort is the target port the worker's HTTP or TCP check dials.
func (s *ServiceSpec) CheckPort() int {
	if s.Health != nil && s.Health.Port != 0 {
		return s.Health.Port
	}
	if len(s.Ports) > 0 {
		return s.Ports[0].TargetPort
	}
	return 0
}

var signalRE = regexp.MustCompile(`^(SIG)?[A-Z0-9+-]{1,16}$|^[0-9]{1,2}$`)

func (s *ServiceSpec) validateDeploy() error {
	if h := s.Health; h != nil {
		switch {
		case h.Interval < 0 || h.Timeout < 0 || h.StartPeriod < 0:
			return errors.New("invalid health check: interval, timeout and start period cannot be negative")
		case h.Retries < 0:
			return fmt.Errorf("invalid --health-retries %d: cannot be negative", h.Retries)
		case h.HTTPPath != "" && h.HTTPPath[0] != '/':
			return fmt.Errorf("invalid --health-http %q: the path must start with /", h.HTTPPath)
		case h.HTTPPath != "" && h.TCP:
			return errors.New("--health-http and --health-tcp cannot be used together")
		case h.Port < 0 || h.Port > 65535:
			return fmt.Errorf("invalid --health-port %d", h.Port)
		case h.WorkerChecks() && s.CheckPort() == 0:
			return errors.New("an HTTP or TCP health check needs a port: publish one or give --health-port")
		}
		if len(h.Test) > 0 {
			switch h.Test[0] {
			case "NONE":
			case "CMD", "CMD-SHELL":
				if len(h.Test) < 2 || h.Test[1] == "" {
					return fmt.Errorf("invalid health check %q: no command", h.Test)
				}
			default:
				return fmt.Errorf("invalid health check %q: the test starts with CMD, CMD-SHELL or NONE", h.Test)
			}
		}
	}
	if s.StopGracePeriod != nil && *s.StopGracePeriod < 0 {
		return fmt.Errorf("invalid --stop-grace-period %s: cannot be negative", *s.StopGracePeriod)
	}
	if s.StopSignal != "" && !signalRE.MatchString(s.StopSignal) {
		return fmt.Errorf("invalid --stop-signal %q: use a signal name such as SIGTERM or a number", s.StopSignal)
	}
	if d := s.RestartPolicy.Delay; d != nil && *d < 0 {
		return fmt.Errorf("invalid --restart-delay %s: cannot be negative", *d)
	}
	if s.RestartPolicy.Window < 0 {
		return fmt.Errorf("invalid --restart-window %s: cannot be negative", s.RestartPolicy.Window)
	}
	if s.Update != nil {
		if err := s.Update.validate("update"); err != nil {
			return err
		}
	}
	if s.Rollback != nil {
		if err := s.Rollback.validate("rollback"); err != nil {
			return err
		}
	}
	return nil
}

func (s *ServiceSpec) normalizeDeploy() {
	if s.Mode.IsJob() {
		// A job has no rolling update: each change of it is a new run.
		if s.StopGracePeriod == nil {
			d := DefaultStopGracePeriod
			s.StopGracePeriod = &d
		}
		return
	}
	if s.Update == nil {
		c := DefaultUpdateConfig()
		s.Update = &c
	}
	if s.Rollback == nil {
		c := DefaultUpdateConfig()
		s.Rollback = &c
	}
	for _, c := range []*UpdateConfig{s.Update, s.Rollback} {
		if c.FailureAction == "" {
			c.FailureAction = FailurePause
		}
		if c.Order == "" {
			c.Order = OrderStopFirst
		}
	}
	if s.StopGracePeriod == nil {
		d := DefaultStopGracePeriod
		s.StopGracePeriod = &d
	}
}

// StopGrace is the spec's stop grace period, the default when unset.
func (s *ServiceSpec) StopGrace() time.Duration {
	if s.StopGracePeriod == nil {
		return DefaultStopGracePeriod
	}
	return *s.StopGracePeriod
}

// SameTaskSpec reports whether tasks made from a and b run the same thing: the
// specs differ at most in what changes the service but not its tasks (replicas,
// a job's max-concurrent, update and rollback settings). A change that keeps the
// task spec moves no task.
func SameTaskSpec(a, b ServiceSpec) bool {
	a.Replicas, b.Replicas = 0, 0
	a.MaxConcurrent, b.MaxConcurrent = 0, 0
	a.Update, b.Update = nil, nil
	a.Rollback, b.Rollback = nil, nil
	return reflect.DeepEqual(normalizeEmpty(a), normalizeEmpty(b))
}

// normalizeEmpty makes nil and empty lists and maps compare equal: a spec that
// travelled through JSON may have either.
func normalizeEmpty(s ServiceSpec) ServiceSpec {
	if len(s.Command) == 0 {
		s.Command = nil
	}
	if len(s.Env) == 0 {
		s.Env = nil
	}
	if len(s.Labels) == 0 {
		s.Labels = nil
	}
	if len(s.Ports) == 0 {
		s.Ports = nil
	}
	if len(s.Constraints) == 0 {
		s.Constraints = nil
	}
	s.Mounts, s.Container = cloneOptions(s)
	s.normalizeOptions()
	if len(s.PlacementPrefs) == 0 {
		s.PlacementPrefs = nil
	}
	if len(s.Secrets) == 0 {
		s.Secrets = nil
	}
	if len(s.Configs) == 0 {
		s.Configs = nil
	}
	if s.Health != nil && len(s.Health.Test) == 0 {
		h := *s.Health
		h.Test = nil
		s.Health = &h
	}
	return s
}

// UpdateState is where a rolling update is.
type UpdateState string

const (
	UpdateUpdating          UpdateState = "updating"
	UpdatePaused            UpdateState = "paused"
	UpdateCompleted         UpdateState = "completed"
	UpdateRollbackStarted   UpdateState = "rollback_started"
	UpdateRollbackPaused    UpdateState = "rollback_paused"
	UpdateRollbackCompleted UpdateState = "rollback_completed"
)

// Active reports whether slots are still being moved to the spec.
func (s UpdateState) Active() bool { return s == UpdateUpdating || s == UpdateRollbackStarted }

// Rollback reports whether the state belongs to a rollback.
func (s UpdateState) Rollback() bool {
	return s == UpdateRollbackStarted || s == UpdateRollbackPaused || s == UpdateRollbackCompleted
}

// UpdateStatus is a service's rolling update as recorded in Raft, so a new leader
// carries it on.
type UpdateStatus struct {
	State       UpdateState `json:"state"`
	Message     string      `json:"message,omitempty"`
	StartedAt   time.Time   `json:"started_at,omitzero"`
	CompletedAt time.Time   `json:"completed_at,omitzero"`
}

// UpdateOpKind names a decision of the leader's update loop.
type UpdateOpKind string

const (
	UpdateOpStatus   UpdateOpKind = "status"   // record Status (paused, completed, ...)
	UpdateOpRollback UpdateOpKind = "rollback" // return to the previous spec; Status.Message says why
)

// UpdateOp is one decision of the rolling update about one service. SpecVersion is
// the version it was made on: if the service has moved on, the op is refused.
type UpdateOp struct {
	Kind        UpdateOpKind `json:"kind"`
	ServiceID   string       `json:"service_id"`
	SpecVersion uint64       `json:"spec_version"`
	Status      UpdateStatus `json:"status"`
	At          time.Time    `json:"at"`
}

// ErrNoPreviousSpec refuses a rollback of a service that was never updated.
var ErrNoPreviousSpec = fmt.Errorf("no previous spec to roll back to: %w", ErrInvalid)

// WithSpec is old after a spec change at time at: the version rises, the old spec is
// kept for a rollback, and an update starts when tasks must change. The caller has
// normalized and validated spec.
func (old *Service) WithSpec(spec ServiceSpec, at time.Time) (*Service, error) {
	if spec.Name != old.Spec.Name {
		return nil, fmt.Errorf("a service cannot be renamed: %w", ErrInvalid)
	}
	if spec.Mode != old.Spec.Mode {
		return nil, fmt.Errorf("the mode of service %q cannot change from %s to %s: %w", old.Spec.Name, old.Spec.Mode, spec.Mode, ErrInvalid)
	}
	svc := *old
	prev := old.Spec.Clone()
	svc.Spec, svc.PreviousSpec = spec, &prev
	svc.SpecVersion, svc.UpdatedAt = old.SpecVersion+1, at
	if spec.Mode.IsJob() {
		// A job has no rolling update: a change of what it runs is a new run.
		if !SameTaskSpec(prev, spec) || svc.JobRun == 0 {
			svc.JobRun = svc.SpecVersion
		}
	} else if !SameTaskSpec(prev, spec) {
		svc.UpdateStatus = &UpdateStatus{State: UpdateUpdating, Message: "update in progress", StartedAt: at}
	}
	return &svc, nil
}

// RolledBack is old returned to its previous spec (the two swap, as Docker's manual
// rollback does, so a second rollback goes forward again), rolling out with the
// rollback settings.
func (old *Service) RolledBack(at time.Time, message string) (*Service, error) {
	if old.Spec.Mode.IsJob() {
		return nil, fmt.Errorf("service %q is a job: it has no rollback; update it to run it again with another spec: %w", old.Spec.Name, ErrInvalid)
	}
	if old.PreviousSpec == nil {
		return nil, fmt.Errorf("service %q: %w", old.Spec.Name, ErrNoPreviousSpec)
	}
	svc := *old
	cur := old.Spec.Clone()
	svc.Spec, svc.PreviousSpec = old.PreviousSpec.Clone(), &cur
	svc.SpecVersion, svc.UpdatedAt = old.SpecVersion+1, at
	if message == "" {
		message = "manually requested rollback"
	}
	svc.UpdateStatus = &UpdateStatus{State: UpdateRollbackStarted, Message: message, StartedAt: at}
	return &svc, nil
}

// ApplyUpdateOp is the one statement of what an update-loop decision does to a
// service (the FSM and the dispatcher's test store both use it). An error refuses
// the op and nothing changes.
func ApplyUpdateOp(cur *Service, op UpdateOp) (*Service, error) {
	if cur == nil {
		return nil, fmt.Errorf("service %s: %w", op.ServiceID, ErrNotFound)
	}
	if op.SpecVersion != cur.SpecVersion {
		return nil, fmt.Errorf("service %q is at spec version %d, not %d: %w", cur.Spec.Name, cur.SpecVersion, op.SpecVersion, ErrConflict)
	}
	switch op.Kind {
	case UpdateOpStatus:
		switch op.Status.State {
		case UpdateUpdating, UpdatePaused, UpdateCompleted, UpdateRollbackStarted, UpdateRollbackPaused, UpdateRollbackCompleted:
		default:
			return nil, fmt.Errorf("update state %q: %w", op.Status.State, ErrInvalid)
		}
		svc := *cur
		st := op.Status
		svc.UpdateStatus = &st
		return &svc, nil
	case UpdateOpRollback:
		return cur.RolledBack(op.At, op.Status.Message)
	default:
		return nil, fmt.Errorf("update op %q: %w", op.Kind, ErrInvalid)
	}
}
