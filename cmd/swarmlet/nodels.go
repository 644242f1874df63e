package main

import (
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
)

// nodeRow is a node as `node ls --format json` lists it: the lower-case column
// names are the JSON keys (CLI.md); leader stays a boolean.
type nodeRow struct {
	ID            string            `json:"id"`
	Hostname      string            `json:"hostname"`
	Addr          string            `json:"addr"`
	Role          string            `json:"role"`
	Status        string            `json:"status"`
	Availability  string            `json:"availability"`
	Leader        bool              `json:"leader"`
	ManagerStatus string            `json:"manager_status"` // Leader, Reachable, Unreachable; "" for workers
	Self          bool              `json:"self"`           // the node the CLI talks to
	Engine        string            `json:"engine"`
	Labels        map[string]string `json:"labels,omitempty"`
	// RestartingUntil: the node said it is restarting; its tasks are kept until then.
	RestartingUntil time.Time `json:"restarting_until,omitzero"`
}

// nodeView is a node as templates see it, in docker's field names.
type nodeView struct {
	ID, Hostname, Addr, Role, Status, Availability, ManagerStatus, Engine string
	Self                                                                  bool
	Labels                                                                string
}

var nodeListing = listing[nodeRow]{
	table: "table {{.ID}}{{if .Self}} *{{end}}\t{{.Hostname}}\t{{.Addr}}\t{{.Role}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.Engine}}",
	headers: map[string]string{"ID": "ID", "Hostname": "HOSTNAME", "Addr": "ADDR", "Role": "ROLE", "Status": "STATUS",
		"Availability": "AVAILABILITY", "ManagerStatus": "MANAGER STATUS", "Engine": "ENGINE", "Labels": "LABELS"},
	id: func(r nodeRow) string { return r.ID },
	view: func(r nodeRow) any {
		status := r.Status
		if r.Status == string(api.NodeDown) && !r.RestartingUntil.IsZero() {
			status += " (restarting)"
		}
		return nodeView{ID: r.ID, Hostname: r.Hostname, Addr: r.Addr, Role: r.Role, Status: status, Availability: r.Availability,
			ManagerStatus: r.ManagerStatus, Engine: r.Engine, Self: r.Self, Labels: labelString(r.Labels)}
	},
}

func labelString(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// managerStatus is docker's MANAGER STATUS: blank for a worker.
func managerStatus(n api.NodeInfo) string {
	switch {
	case n.Role != api.RoleManager:
		return ""
	case n.Leader:
		return "Leader"
	case n.Status == api.NodeReady:
		return "Reachable"
	default:
		return "Unreachable"
	}
}

var nodeFilterKeys = []string{"id", "name", "label", "node.label", "role", "membership", "availability", "status"}

func nodeRows(nodes []api.NodeInfo, self string, f filters) []nodeRow {
	rows := make([]nodeRow, 0, len(nodes))
	for _, n := range nodes {
		ok := f.match(func(k, v string) bool {
			switch k {
			case "id":
				return idMatch(n.ID, v)
			case "name":
				return nameMatch(n.Hostname, v)
			case "label", "node.label":
				return labelMatch(n.Labels, v)
			case "role":
				return string(n.Role) == strings.ToLower(v)
			case "membership":
				// Every member was admitted by its token: none waits for acceptance.
				return strings.ToLower(v) == "accepted"
			case "availability":
				return string(n.Availability) == strings.ToLower(v)
			case "status":
				return string(n.Status) == strings.ToLower(v)
			}
			return false
		})
		if !ok {
			continue
		}
		rows = append(rows, nodeRow{ID: n.ID, Hostname: n.Hostname, Addr: n.Addr, Role: string(n.Role), Status: string(n.Status), RestartingUntil: n.RestartingUntil,
			Availability: string(n.Availability), Leader: n.Leader, ManagerStatus: managerStatus(n), Self: n.ID == self,
			Engine: n.Engine, Labels: n.Labels})
	}
	return rows
}

func checkNodeFilters(raw []string) (filters, error) {
	f, err := parseFilters(raw, nodeFilterKeys)
	if err != nil {
		return nil, err
	}
	for key, allowed := range map[string][]string{
		"role":         {"manager", "worker"},
		"membership":   {"accepted", "pending"},
		"availability": {"active", "pause", "drain"},
		"status":       {"ready", "down"},
	} {
		if err := f.checkValues(key, allowed...); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func newNodeLs() *cobra.Command {
	var o output
	var raw []string
	c := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List nodes (* marks the node you talk to)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f, err := checkNodeFilters(raw)
			if err != nil {
				return err
			}
			if _, err := parseFormat(o.format, nodeListing.table, nodeView{}); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			info, err := cl.Info(ctx)
			if err != nil {
				return err
			}
			nodes, _, err := cl.Nodes(ctx)
			if err != nil {
				return err
			}
			return nodeListing.print(c.OutOrStdout(), o, nodeRows(nodes, info.NodeID, f))
		},
	}
	o.flags(c, "IDs")
	filterFlag(c, &raw, nodeFilterKeys)
	return c
}
