package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

func newInfoCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use: "info", Short: "Show this node and the cluster as it sees it", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
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
			if format == "json" {
				return printJSON(c.OutOrStdout(), info)
			}
			w := table(c.OutOrStdout())
			fmt.Fprintf(w, "Node ID:\t%s\nHostname:\t%s\nAddress:\t%s\nRole:\t%s\nCluster:\t%s\nEngine:\t%s\n", info.NodeID, info.Hostname, info.Addr, info.Role, info.ClusterID, info.Engine)
			if info.Role == api.RoleManager {
				leader := info.LeaderID
				if leader == "" {
					leader = "none (no quorum)"
				}
				fmt.Fprintf(w, "Leader:\t%s\nManagers:\t%d (%d reachable)\nNodes:\t%d\nServices:\t%d\nTasks:\t%d\nRaft index:\t%d\nRaft term:\t%d\n", leader, info.Managers, info.ManagersUp, info.Nodes, info.Services, info.Tasks, info.RaftIndex, info.RaftTerm)
			}
			if info.DNSAddr != "" {
				fmt.Fprintf(w, "DNS:\t%s\n", info.DNSAddr)
			}
			fmt.Fprintf(w, "Data dir:\t%s\nVersion:\t%s\n", info.DataDir, info.Version)
			return w.Flush()
		},
	}
	c.Flags().StringVar(&format, "format", "", "json for machine-readable output")
	return c
}

func newJoinTokenCmd() *cobra.Command {
	var quiet, rotate bool
	c := &cobra.Command{
		Use: "join-token [-q] [--rotate] worker|manager", Short: "Show or rotate a join token", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			role := api.NodeRole(args[0])
			if role != api.RoleWorker && role != api.RoleManager {
				return fmt.Errorf("unknown role %q: use worker or manager", args[0])
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			var toks api.JoinTokens
			if rotate {
				toks, err = retryRefused(ctx, func(ctx context.Context) (api.JoinTokens, error) { return cl.RotateToken(ctx, role) })
			} else {
				toks, err = cl.JoinTokens(ctx)
			}
			if err != nil {
				return err
			}
			tok := toks.Worker
			if role == api.RoleManager {
				tok = toks.Manager
			}
			if quiet {
				fmt.Fprintln(c.OutOrStdout(), tok)
				return nil
			}
			if rotate {
				fmt.Fprintf(c.OutOrStdout(), "Rotated the %s join token; the old one no longer works.\n", role)
			}
			info, _ := cl.Info(ctx)
			fmt.Fprintf(c.OutOrStdout(), "To add a %s to this cluster, run:\n\n    swarmlet join --token %s %s\n\n", role, tok, info.Addr)
			return nil
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the token only")
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the token; the old one stops working")
	return c
}

func newLeaveCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use: "leave [--force]", Short: "Stop this node's tasks, leave the cluster and stop the daemon", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.Leave(ctx, force); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), "Node left the cluster.")
			return nil
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "leave even if this costs the cluster its quorum")
	return c
}

func newNodeCmd() *cobra.Command {
	c := newGroup("node", "Manage nodes")
	c.AddCommand(newNodeLs(), newNodeInspect(), newNodeUpdate(), newNodeRole("promote", api.RoleManager), newNodeRole("demote", api.RoleWorker), newNodeRm())
	return c
}

// nodeRow is a node as listed: the lower-case column names are the JSON keys.
type nodeRow struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Addr         string            `json:"addr"`
	Role         string            `json:"role"`
	Status       string            `json:"status"`
	Availability string            `json:"availability"`
	Leader       bool              `json:"leader"`
	Engine       string            `json:"engine"`
	Labels       map[string]string `json:"labels,omitempty"`
	// RestartingUntil: the node said it is restarting; its tasks are kept until then.
	RestartingUntil time.Time `json:"restarting_until,omitzero"`
}

func newNodeLs() *cobra.Command {
	l := listing[nodeRow]{
		header: "ID\tHOSTNAME\tADDR\tROLE\tSTATUS\tAVAILABILITY\tLEADER\tENGINE",
		id:     func(r nodeRow) string { return r.ID },
		line: func(r nodeRow) string {
			leader := ""
			if r.Leader {
				leader = "*"
			}
			status := r.Status
			if r.Status == string(api.NodeDown) && !r.RestartingUntil.IsZero() {
				status += " (restarting)"
			}
			return strings.Join([]string{r.ID, r.Hostname, r.Addr, r.Role, status, r.Availability, leader, r.Engine}, "\t")
		},
	}
	c := &cobra.Command{
		Use: "ls", Short: "List nodes", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkFormat(l.format); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			nodes, _, err := cl.Nodes(ctx)
			if err != nil {
				return err
			}
			rows := make([]nodeRow, 0, len(nodes))
			for _, n := range nodes {
				rows = append(rows, nodeRow{ID: n.ID, Hostname: n.Hostname, Addr: n.Addr, Role: string(n.Role), Status: string(n.Status),
					Availability: string(n.Availability), Leader: n.Leader, Engine: n.Engine, Labels: n.Labels, RestartingUntil: n.RestartingUntil})
			}
			return l.print(c.OutOrStdout(), rows)
		},
	}
	l.flags(c, "IDs")
	return c
}

func newNodeInspect() *cobra.Command {
	return newInspect("inspect NODE...", "Show nodes in full", (*client.Client).Node)
}

func newNodeUpdate() *cobra.Command {
	var avail string
	var add, rm []string
	c := &cobra.Command{
		Use: "update [--availability active|pause|drain] [--label-add K=V] [--label-rm K] NODE", Short: "Change a node", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			req := api.NodeUpdateRequest{Availability: api.Availability(avail), LabelRm: rm}
			switch req.Availability {
			case "", api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
			default:
				return fmt.Errorf("invalid --availability %q: use active, pause or drain", avail)
			}
			for _, kv := range add {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("invalid --label-add %q: expected KEY=VALUE", kv)
				}
				if req.LabelAdd == nil {
					req.LabelAdd = map[string]string{}
				}
				req.LabelAdd[k] = v
			}
			if req.Availability == "" && len(req.LabelAdd) == 0 && len(rm) == 0 {
				return fmt.Errorf("nothing to update: give --availability, --label-add or --label-rm")
			}
			return updateNode(c, args[0], req)
		},
	}
	c.Flags().StringVar(&avail, "availability", "", "active, pause or drain")
	c.Flags().StringArrayVar(&add, "label-add", nil, "add or change a label (K=V)")
	c.Flags().StringArrayVar(&rm, "label-rm", nil, "remove a label")
	return c
}

func updateNode(c *cobra.Command, ref string, req api.NodeUpdateRequest) error {
	cl, ctx, cancel, err := connect()
	if err != nil {
		return err
	}
	defer cancel()
	n, err := retryRefused(ctx, func(ctx context.Context) (api.Node, error) { return cl.UpdateNode(ctx, ref, req) })
	if err != nil {
		return err
	}
	fmt.Fprintln(c.OutOrStdout(), n.ID)
	return nil
}

func newNodeRole(verb string, role api.NodeRole) *cobra.Command {
	return &cobra.Command{
		Use: verb + " NODE...", Short: "Make nodes " + string(role) + "s", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, a := range args {
				if err := updateNode(c, a, api.NodeUpdateRequest{Role: role}); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func newNodeRm() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use: "rm [--force] NODE...", Short: "Remove nodes from the cluster", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			for _, a := range args {
				if _, err := retryRefused(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, cl.RemoveNode(ctx, a, force) }); err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), a)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "remove a node that is not down, or a manager")
	return c
}
