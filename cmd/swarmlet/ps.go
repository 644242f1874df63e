package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// taskRow is a task as `service ps` and `node ps` list it. The JSON keys are
// CLI.md's: node is the node's ID, current the lower-case state.
type taskRow struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Image    string `json:"image"`
	Node     string `json:"node"`
	NodeName string `json:"node_name,omitempty"`
	Desired  string `json:"desired"`
	Current  string `json:"current"`
	Error    string `json:"error"`
	Service  string `json:"service"`
	Slot     uint64 `json:"slot"`
	Since    string `json:"since,omitempty"`
	Ports    string `json:"ports,omitempty"`
	Addr     string `json:"addr,omitempty"` // where the task answers: its container's address, or its node's
	// History: an earlier task of a slot that has a newer one (shown as " \_ NAME").
	History bool `json:"history,omitempty"`
	// Health is the task's health check verdict (starting, healthy, unhealthy).
	Health      string `json:"health,omitempty"`
	SpecVersion uint64 `json:"spec_version"`
	// Progress is what a preparing task is doing (pulling or fetching its image).
	Progress string `json:"progress,omitempty"`
	// Secrets and Configs name what the task was handed, as NAME@VERSION.
	Secrets []string `json:"secrets,omitempty"`
	Configs []string `json:"configs,omitempty"`

	at time.Time
}

// taskView is a task as templates see it, in docker's field names.
type taskView struct {
	ID, Name, Image, Node, NodeID, DesiredState, CurrentState, Error, Ports, Service, Health string
	Slot, SpecVersion                                                                        uint64
}

// now is the clock "running 5 seconds ago" is measured against (fixed in golden tests).
var now = time.Now

// psListing prints tasks; noTrunc is read when rows print.
func psListing(noTrunc *bool) listing[taskRow] {
	return listing[taskRow]{
		table: "table {{.ID}}\t{{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}",
		headers: map[string]string{"ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "NodeID": "NODE ID",
			"DesiredState": "DESIRED", "CurrentState": "CURRENT", "Error": "ERROR", "Ports": "PORTS", "Service": "SERVICE", "Slot": "SLOT",
			"Health": "HEALTH", "SpecVersion": "VERSION"},
		id: func(r taskRow) string { return r.ID },
		view: func(r taskRow) any {
			v := taskView{ID: shortID(r.ID, *noTrunc), Name: r.Name, Image: r.Image, Node: r.NodeName, NodeID: r.Node,
				DesiredState: r.Desired, CurrentState: r.Current, Error: r.Error, Ports: r.Ports, Service: r.Service, Slot: r.Slot,
				Health: r.Health, SpecVersion: r.SpecVersion}
			if v.Node == "" {
				v.Node = r.Node
			}
			if r.History {
				v.Name = ` \_ ` + v.Name
			}
			if !r.at.IsZero() {
				// Docker's "Running 5 minutes ago".
				v.CurrentState = fmt.Sprintf("%s %s ago", capitalize(r.Current), strings.ToLower(units.HumanDuration(now().Sub(r.at))))
			}
			if r.Progress != "" {
				v.CurrentState += " (" + r.Progress + ")"
			} else if r.Health != "" && r.Health != string(api.HealthNone) {
				v.CurrentState += " (" + r.Health + ")"
			}
			if !*noTrunc {
				// A pending task's reason names the nodes that refused it (a few
				// per reason): the names are the point, so it gets more room.
				limit := 60
				if r.Current == "pending" {
					limit = 200
				}
				v.Error = truncate(v.Error, limit)
			}
			return v
		},
	}
}

var taskFilterKeys = []string{"id", "name", "node", "desired-state", "service"}

func checkTaskFilters(raw []string) (filters, error) {
	f, err := parseFilters(raw, taskFilterKeys)
	if err != nil {
		return nil, err
	}
	for _, v := range f["desired-state"] {
		// Docker's "accepted" is a state of its own; here a task meant to run is.
		if v == "accepted" {
			continue
		}
		if _, err := api.ParseTaskState(v); err != nil {
			return nil, fmt.Errorf("invalid --filter desired-state=%s: use running, shutdown, accepted or another task state", v)
		}
	}
	return f, nil
}

// taskRows orders tasks as docker's ps does: by service and slot (node, for
// global services), the newest of each first and its history below it. all keeps
// finished tasks; else a slot shows what runs or is meant to.
func taskRows(tasks []api.Task, nodes []api.NodeInfo, all bool, f filters) []taskRow {
	hostname := map[string]string{}
	for _, n := range nodes {
		hostname[n.ID] = n.Hostname
	}
	group := func(t *api.Task) string {
		if t.Slot == 0 {
			return t.ServiceName + "\x00" + t.NodeID
		}
		return fmt.Sprintf("%s\x00%020d", t.ServiceName, t.Slot)
	}
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := &tasks[i], &tasks[j]
		if ga, gb := group(a), group(b); ga != gb {
			return ga < gb
		}
		return a.CreateIndex > b.CreateIndex
	})
	var rows []taskRow
	prev := ""
	for i := range tasks {
		t := &tasks[i]
		if !all && t.DesiredState != api.TaskRunning && t.Status.State.Terminal() {
			continue
		}
		name := taskName(t)
		ok := f.match(func(k, v string) bool {
			switch k {
			case "id":
				return idMatch(t.ID, v)
			case "name":
				return nameMatch(name, v)
			case "service":
				return t.ServiceName == v || idMatch(t.ServiceID, v)
			case "node":
				return t.NodeID == v || hostname[t.NodeID] == v || (len(v) >= 3 && idMatch(t.NodeID, v))
			case "desired-state":
				if v == "accepted" {
					return t.DesiredState <= api.TaskRunning
				}
				s, _ := api.ParseTaskState(v)
				return t.DesiredState == s
			}
			return false
		})
		if !ok {
			continue
		}
		errText := t.Status.Err
		if t.Status.State == api.TaskPending {
			errText = t.PendingReason
		}
		if t.DesiredState == api.TaskReady {
			errText = t.Status.Message // why it waits (a restart backoff) and until when
		}
		var ports []string
		for _, p := range t.Status.Ports {
			ports = append(ports, fmt.Sprintf("%d->%d/%s", p.HostPort, p.TargetPort, p.Protocol))
		}
		g := group(t)
		row := taskRow{ID: t.ID, Name: name, Image: t.Spec.Image, Node: t.NodeID, NodeName: hostname[t.NodeID],
			Desired: t.DesiredState.String(), Current: t.Status.State.String(), Error: errText, Service: t.ServiceName,
			Slot: t.Slot, Ports: strings.Join(ports, ","), History: g == prev, at: t.Status.Timestamp,
			Health: string(t.Status.Health), SpecVersion: t.SpecVersion, Progress: preparingProgress(t), Addr: t.Status.Addr}
		if !t.Status.Timestamp.IsZero() {
			row.Since = t.Status.Timestamp.Format(time.RFC3339)
		}
		row.Secrets, row.Configs = refStrings(t.Spec.Secrets), refStrings(t.Spec.Configs)
		rows = append(rows, row)
		prev = g
	}
	return rows
}

// psCommand is what service ps and node ps share: flags, filters and printing.
func psCommand(use, short string, args cobra.PositionalArgs, fetch func(ctx context.Context, cl *client.Client, args []string) ([]api.Task, error)) *cobra.Command {
	var o output
	var all bool
	var raw []string
	l := psListing(&o.noTrunc)
	c := &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(c *cobra.Command, args []string) error {
			f, err := checkTaskFilters(raw)
			if err != nil {
				return err
			}
			if _, err := parseFormat(o.format, l.table, taskView{}); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			tasks, err := fetch(ctx, cl, args)
			if err != nil {
				return err
			}
			nodes, _, _ := cl.Nodes(ctx)
			return l.print(c.OutOrStdout(), o, taskRows(tasks, nodes, all, f))
		},
	}
	o.flags(c, "task IDs")
	o.truncFlag(c)
	filterFlag(c, &raw, taskFilterKeys)
	c.Flags().BoolVarP(&all, "all", "a", false, "include finished tasks (history)")
	return c
}

func newServicePs() *cobra.Command {
	return psCommand("ps [-q] [--format json] [--all] [--filter K=V] [--no-trunc] SERVICE...", "List services' tasks", cobra.MinimumNArgs(1),
		func(ctx context.Context, cl *client.Client, args []string) ([]api.Task, error) {
			var out []api.Task
			for _, a := range args {
				ts, _, err := cl.Tasks(ctx, a, 0, 0)
				if err != nil {
					return nil, err
				}
				out = append(out, ts...)
			}
			return out, nil
		})
}

func newNodePs() *cobra.Command {
	return psCommand("ps [-q] [--format json] [--all] [--filter K=V] [--no-trunc] [NODE...]", "List the tasks of nodes (default: the node you talk to)", cobra.ArbitraryArgs,
		func(ctx context.Context, cl *client.Client, args []string) ([]api.Task, error) {
			if len(args) == 0 {
				info, err := cl.Info(ctx)
				if err != nil {
					return nil, err
				}
				args = []string{info.NodeID}
			}
			var out []api.Task
			for _, a := range args {
				ts, _, err := cl.AllTasks(ctx, a, 0, 0)
				if err != nil {
					return nil, err
				}
				out = append(out, ts...)
			}
			return out, nil
		})
}
