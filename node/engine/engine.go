// Package engine runs tasks: the Engine interface and its docker and process implementations.
package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"

	"github.com/swarmlet/swarmlet/api"
)

// Labels put on every container or process record, so a restarted worker can adopt
// what still runs and several nodes can share one Docker engine.
const (
	LabelTask    = "swarmlet.task"
	LabelService = "swarmlet.service"
	LabelNode    = "swarmlet.node"
	LabelSlot    = "swarmlet.slot"
)

// ErrRejected wraps a start failure that retrying on this node will not fix
// (unknown image, program not found): the task becomes REJECTED with the message.
var ErrRejected = errors.New("rejected")

// Instance is one running or exited workload the engine knows of.
type Instance struct {
	TaskID      string
	ServiceName string
	NodeID      string
	ID          string        // container ID or PID
	State       api.TaskState // TaskRunning, or TaskComplete / TaskFailed once exited
	ExitCode    int
	Err         string
	Addr        string            // address the task answers on (container IP, or node address)
	Ports       []api.PortBinding // target port -> host port on the node address
	HostAddr    string            // the node address host ports are bound on
	ImageID     string            // the image it runs (docker: sha256:...), "" if none
	// Health is what the engine's own health check says ("" when it runs none):
	// Docker's HEALTHCHECK.
	Health api.Health
}

// CheckAddr is where a check of the task's target port connects: the host port
// it is published on, else the task's own address.
func (in Instance) CheckAddr(target int) string {
	for _, p := range in.Ports {
		if p.TargetPort == target && p.HostPort > 0 && (p.Protocol == "" || p.Protocol == "tcp") {
			host := in.HostAddr
			if host == "" {
				host = in.Addr
			}
			return net.JoinHostPort(host, strconv.Itoa(p.HostPort))
		}
	}
	return net.JoinHostPort(in.Addr, strconv.Itoa(target))
}

// CommandHealth is implemented by engines that run a task's health command
// themselves (Docker's HEALTHCHECK) and report it in Instance.Health; for the
// others the worker runs the command.
type CommandHealth interface {
	RunsHealthCommands() bool
}

// Config is what every engine needs to know about the node it serves.
type Config struct {
	NodeID   string
	NodeAddr string // advertise address; host ports are bound here
	DNS      string // "ip:port" of this node's DNS server, given to tasks ("" if none)
	DataDir  string // engine state, e.g. process logs, lives under here
	// FilesDir is where the node writes its tasks' secrets and configs
	// (files.go); "" if it hands out none.
	FilesDir string
}

// Engine is the one seam between the worker and whatever runs tasks.
// All methods are safe for concurrent use.
type Engine interface {
	Name() string
	// Start creates and starts the task's workload and returns it running.
	// An error wrapping ErrRejected means the task can never start here.
	Start(ctx context.Context, t *api.Task) (Instance, error)
	// Stop kills the task's workload and removes it; stopping an unknown task is not an error.
	Stop(ctx context.Context, taskID string) error
	// List returns every workload labelled with this engine's node ID, running or exited.
	List(ctx context.Context) ([]Instance, error)
	// Changes delivers task IDs whose workload changed state (exited, died), so the
	// worker need not poll; the channel closes when ctx ends. An empty ID says the
	// engine's own stream of changes broke: the engine may have gone away.
	Changes(ctx context.Context) <-chan string
	// Logs copies the task's output to w; with Follow it keeps copying until ctx
	// ends. With Timestamps each line starts with its time and a space.
	Logs(ctx context.Context, taskID string, opt LogOptions, w io.Writer) error
	Close() error
}

// LogOptions select what Logs copies (Details is the API's, not the engine's).
type LogOptions = api.LogOptions

// TimestampFormat is how Logs writes times with Timestamps.
const TimestampFormat = api.LogTimestampFormat
