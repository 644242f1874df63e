package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
)

// serviceRow is a service as `service ls --format json` lists it (CLI.md keys;
// running and desired are numbers).
type serviceRow struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Mode     string            `json:"mode"`
	Replicas string            `json:"replicas"`
	Image    string            `json:"image"`
	Ports    string            `json:"ports"`
	Running  int               `json:"running"`
	Desired  uint64            `json:"desired"`
	VIP      string            `json:"vip,omitempty"`
	PortList []string          `json:"port_list,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Update is the rolling update's state (updating, paused, completed, ...).
	Update        string `json:"update,omitempty"`
	UpdateMessage string `json:"update_message,omitempty"`
	// Completed and Completions: a job's progress, its current run's tasks that
	// completed and how many it wants.
	Completed   int    `json:"completed,omitempty"`
	Completions uint64 `json:"completions,omitempty"`
}

// serviceView is a service as templates see it, in docker's field names.
type serviceView struct {
	ID, Name, Mode, Replicas, Image, Ports, VIP, Labels, Update, UpdateMessage string
	Running                                                                    int
	Desired                                                                    uint64
}

var serviceListing = listing[serviceRow]{
	table: "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}\t{{.Update}}",
	headers: map[string]string{"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE", "Ports": "PORTS",
		"VIP": "VIP", "Labels": "LABELS", "Running": "RUNNING", "Desired": "DESIRED", "Update": "UPDATE", "UpdateMessage": "UPDATE MESSAGE"},
	id: func(r serviceRow) string { return r.ID },
	view: func(r serviceRow) any {
		return serviceView{ID: r.ID, Name: r.Name, Mode: r.Mode, Replicas: r.Replicas, Image: r.Image, Ports: r.Ports,
			VIP: r.VIP, Labels: labelString(r.Labels), Running: r.Running, Desired: r.Desired, Update: r.Update, UpdateMessage: r.UpdateMessage}
	},
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

var serviceFilterKeys = []string{"id", "name", "label", "mode"}

func serviceRows(svcs []api.ServiceInfo, f filters) []serviceRow {
	rows := make([]serviceRow, 0, len(svcs))
	for _, s := range svcs {
		ok := f.match(func(k, v string) bool {
			switch k {
			case "id":
				return idMatch(s.ID, v)
			case "name":
				return nameMatch(s.Spec.Name, v)
			case "label":
				return labelMatch(s.Spec.Labels, v)
			case "mode":
				return string(s.Spec.Mode) == strings.ToLower(v)
			}
			return false
		})
		if !ok {
			continue
		}
		ports := portsString(s.Ports)
		row := serviceRow{ID: s.ID, Name: s.Spec.Name, Mode: string(s.Spec.Mode), Replicas: replicasColumn(s),
			Image: s.Spec.Image, Ports: strings.Join(ports, ","), Running: s.Running, Desired: s.Desired, VIP: s.VIP, PortList: ports, Labels: s.Spec.Labels}
		if u := s.UpdateStatus; u != nil {
			row.Update, row.UpdateMessage = string(u.State), u.Message
		}
		if s.Spec.Mode.IsJob() {
			row.Completed, row.Completions = s.Completed, jobCompletions(s)
		}
		rows = append(rows, row)
	}
	return rows
}

func newServiceLs() *cobra.Command {
	var o output
	var raw []string
	c := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List services", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f, err := parseFilters(raw, serviceFilterKeys)
			if err != nil {
				return err
			}
			if err := f.checkValues("mode", "replicated", "global", "replicated-job", "global-job"); err != nil {
				return err
			}
			if _, err := parseFormat(o.format, serviceListing.table, serviceView{}); err != nil {
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
			return serviceListing.print(c.OutOrStdout(), o, serviceRows(svcs, f))
		},
	}
	o.flags(c, "IDs")
	filterFlag(c, &raw, serviceFilterKeys)
	return c
}
