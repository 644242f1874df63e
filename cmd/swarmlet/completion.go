package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Shell completion: cobra's `completion bash|zsh|fish|powershell` command, with
// node and service names fetched from the daemon the flags point at.

// completeArgs gives the commands that take nodes or services their completion.
// It walks the tree once the commands exist, so the files defining them need not
// know of completion.
func completeArgs(root *cobra.Command) {
	for path, f := range map[string]cobra.CompletionFunc{
		"node inspect": completeNodes, "node update": completeNodes, "node promote": completeNodes,
		"node demote": completeNodes, "node rm": completeNodes, "node ps": completeNodes,
		"service ps": completeServices, "service inspect": completeServices, "service rm": completeServices,
		"service logs": completeServices, "service update": completeServices, "service rollback": completeServices,
		"service scale": completeScale,
		"stack ps":      completeStacks, "stack services": completeStacks, "stack rm": completeStacks,
	} {
		c, _, err := root.Find(strings.Fields(path))
		if err == nil && c != root && c.Name() == strings.Fields(path)[1] && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = f
		}
	}
	root.CompletionOptions.HiddenDefaultCmd = false
}

// completionContext bounds a completion's API call: a shell must not hang on a
// daemon that does not answer.
func completionContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

func completeNodes(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	cl, err := apiClient()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionContext()
	defer cancel()
	nodes, _, err := cl.Nodes(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range nodes {
		for _, s := range []string{n.Hostname, n.ID} {
			if strings.HasPrefix(s, prefix) {
				out = append(out, s+"\t"+string(n.Role)+" "+n.Addr)
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func serviceNames(prefix, suffix string) []string {
	cl, err := apiClient()
	if err != nil {
		return nil
	}
	ctx, cancel := completionContext()
	defer cancel()
	svcs, _, err := cl.Services(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range svcs {
		if strings.HasPrefix(s.Spec.Name, prefix) {
			out = append(out, s.Spec.Name+suffix)
		}
	}
	return out
}

func completeServices(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return serviceNames(prefix, ""), cobra.ShellCompDirectiveNoFileComp
}

// completeScale completes NAME= and leaves the count to the user.
func completeScale(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if strings.Contains(prefix, "=") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return serviceNames(prefix, "="), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}
