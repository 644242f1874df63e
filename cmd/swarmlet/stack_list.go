package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// stackRow is a stack as `stack ls --format json` lists it.
type stackRow struct {
	Name     string `json:"name"`
	Services int    `json:"services"`
}

type stackView struct {
	Name     string
	Services int
}

var stackListing = listing[stackRow]{
	table:   "table {{.Name}}\t{{.Services}}",
	headers: map[string]string{"Name": "NAME", "Services": "SERVICES"},
	id:      func(r stackRow) string { return r.Name },
	view:    func(r stackRow) any { return stackView(r) },
}

func newStackLs() *cobra.Command {
	var o output
	c := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List stacks", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if _, err := parseFormat(o.format, stackListing.table, stackView{}); err != nil {
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
			n := map[string]int{}
			for _, s := range svcs {
				if ns := s.Spec.Labels[api.LabelStackNamespace]; ns != "" {
					n[ns]++
				}
			}
			var rows []stackRow
			for _, name := range slices.Sorted(maps.Keys(n)) {
				rows = append(rows, stackRow{Name: name, Services: n[name]})
			}
			return stackListing.print(c.OutOrStdout(), o, rows)
		},
	}
	o.flags(c, "stack names")
	return c
}

// stackServices are the services of a stack, by name.
func stackServices(ctx context.Context, cl *client.Client, name string) ([]api.ServiceInfo, error) {
	if err := api.ValidateStackName(name); err != nil {
		return nil, err
	}
	svcs, _, err := cl.Services(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.ServiceInfo
	for _, s := range svcs {
		if s.Spec.Labels[api.LabelStackNamespace] == name {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b api.ServiceInfo) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	return out, nil
}

func newStackServices() *cobra.Command {
	var o output
	var raw []string
	c := &cobra.Command{
		Use: "services [-q] [--format json] [--filter K=V] STACK", Short: "List the services of a stack", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			f, err := parseFilters(raw, serviceFilterKeys)
			if err != nil {
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
			svcs, err := stackServices(ctx, cl, args[0])
			if err != nil {
				return err
			}
			if len(svcs) == 0 && o.format == "" && !o.quiet {
				fmt.Fprintf(c.ErrOrStderr(), "Nothing found in stack: %s\n", args[0])
				return nil
			}
			return serviceListing.print(c.OutOrStdout(), o, serviceRows(svcs, f))
		},
	}
	o.flags(c, "IDs")
	filterFlag(c, &raw, serviceFilterKeys)
	return c
}

func newStackPs() *cobra.Command {
	return psCommand("ps [-q] [--format json] [--all] [--filter K=V] [--no-trunc] STACK", "List the tasks of a stack", cobra.ExactArgs(1),
		func(ctx context.Context, cl *client.Client, args []string) ([]api.Task, error) {
			svcs, err := stackServices(ctx, cl, args[0])
			if err != nil {
				return nil, err
			}
			if len(svcs) == 0 {
				return nil, fmt.Errorf("nothing found in stack: %s", args[0])
			}
			var out []api.Task
			for _, s := range svcs {
				ts, _, err := cl.Tasks(ctx, s.Spec.Name, 0, 0)
				if err != nil {
					return nil, err
				}
				out = append(out, ts...)
			}
			return out, nil
		})
}

func newStackRm() *cobra.Command {
	return &cobra.Command{
		Use: "rm STACK...", Aliases: []string{"remove", "down"}, Short: "Remove stacks: their services, and the secrets and configs they made",
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			store := stackObjects(cl)
			for _, name := range args {
				svcs, err := stackServices(ctx, cl, name)
				if err != nil {
					return err
				}
				found := len(svcs) > 0
				for _, s := range svcs {
					fmt.Fprintf(c.OutOrStdout(), "Removing service %s\n", s.Spec.Name)
					if _, err := retryRefused(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, cl.RemoveService(ctx, s.Spec.Name) }); err != nil {
						return fmt.Errorf("remove service %s: %w", s.Spec.Name, err)
					}
				}
				// The services first: a secret in use cannot be removed.
				for _, kind := range []string{"secret", "config"} {
					names, err := store.List(ctx, kind, api.LabelStackNamespace+"="+name)
					if err != nil {
						return fmt.Errorf("%ss of stack %s: %w", kind, name, err)
					}
					for _, n := range names {
						found = true
						fmt.Fprintf(c.OutOrStdout(), "Removing %s %s\n", kind, n)
						if err := store.Remove(ctx, kind, n); err != nil {
							return fmt.Errorf("remove %s %s: %w", kind, n, err)
						}
					}
				}
				if !found {
					fmt.Fprintf(c.ErrOrStderr(), "Nothing found in stack: %s\n", name)
				}
			}
			return nil
		},
	}
}

// completeStacks offers the stacks' names.
func completeStacks(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	cl, err := apiClient()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionContext()
	defer cancel()
	svcs, _, err := cl.Services(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range svcs {
		if ns := s.Spec.Labels[api.LabelStackNamespace]; ns != "" && !seen[ns] && strings.HasPrefix(ns, prefix) {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
