package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/stack"
)

// Stacks are client-side, as docker's are: the CLI reads the compose files
// (package stack), plans against the services the cluster has, and writes the
// plan through the ordinary service calls, so every change is the normal
// versioned create or update, with its checks and its rollout. A stack is the
// set of services labelled com.docker.stack.namespace=NAME.

func newStackCmd() *cobra.Command {
	c := newGroup("stack", "Deploy and manage stacks of services from compose files")
	c.AddCommand(newStackDeploy(), newStackLs(), newStackServices(), newStackPs(), newStackRm())
	return c
}

func newStackDeploy() *cobra.Command {
	var (
		files, profiles []string
		prune, dryRun   bool
		detach          bool
		resolve         string
		withAuth        bool
	)
	c := &cobra.Command{
		Use:     "deploy -c FILE [-c FILE...] [--prune] [--dry-run] STACK",
		Aliases: []string{"up"},
		Short:   "Create or update a stack's services from compose files; only what changed is updated",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			switch resolve {
			case "", api.ResolveAlways, api.ResolveChanged, api.ResolveNever:
			default:
				return fmt.Errorf("invalid --resolve-image %q: use always, changed or never", resolve)
			}
			ctx, cancel := cmdContext()
			defer cancel()
			st, err := stack.Load(ctx, stack.Options{Name: name, Files: files, Env: os.Environ(), Profiles: profiles})
			if err != nil {
				return err
			}
			printWarnings(c.ErrOrStderr(), st.Warnings)
			cl, err := apiClient()
			if err != nil {
				return err
			}
			store := stackObjects(cl)
			plan, err := planStack(ctx, cl, store, st, prune)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			if dryRun {
				fmt.Fprintf(out, "Stack %s (dry run: nothing is changed)\n\n", name)
				plan.Write(out)
				return nil
			}
			d := stackDeployer{cl: cl, store: store, out: out, warn: c.ErrOrStderr(), resolve: resolve, withAuth: withAuth}
			return d.apply(ctx, plan, detach)
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&files, "compose-file", "c", nil, "compose file (repeat to merge several, later ones override; - is stdin)")
	f.StringArrayVar(&profiles, "profile", nil, "compose profile to enable (repeatable)")
	f.BoolVar(&prune, "prune", false, "remove the stack's services that are no longer in the files")
	f.BoolVar(&dryRun, "dry-run", false, "print what would change (+ create, ~ update, - remove) and change nothing")
	// Waiting is swarmlet's default, as service create and update wait: a
	// deploy that cannot converge says why.
	f.BoolVarP(&detach, "detach", "d", false, "return once the changes are written instead of waiting for each changed service to converge or finish its update")
	f.StringVar(&resolve, "resolve-image", "", "pin images to digests: always, changed or never (default: always for new services, changed for updated ones)")
	f.BoolVar(&withAuth, "with-registry-auth", false, "send the docker client's registry login to the nodes that run the services")
	_ = c.MarkFlagRequired("compose-file")
	return c
}

// planStack reads what the cluster has and plans the deploy.
func planStack(ctx context.Context, cl *client.Client, store objectStore, st *stack.Stack, prune bool) (*stack.Plan, error) {
	infos, _, err := cl.Services(ctx)
	if err != nil {
		return nil, err
	}
	svcs := make([]api.Service, len(infos))
	for i := range infos {
		svcs[i] = infos[i].Service
	}
	objs := map[string]stack.ObjectState{}
	for _, k := range []struct {
		kind string
		objs []stack.Object
	}{{"secret", st.Secrets}, {"config", st.Configs}} {
		for _, o := range k.objs {
			found, labels, err := store.Lookup(ctx, k.kind, o.Name)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", k.kind, o.Name, err)
			}
			objs[k.kind+"/"+o.Name] = stack.ObjectState{Exists: found, Stack: labels[api.LabelStackNamespace]}
		}
	}
	return stack.PlanDeploy(st, svcs, objs, prune)
}

type stackDeployer struct {
	cl        *client.Client
	store     objectStore
	out, warn io.Writer
	resolve   string
	withAuth  bool
}

// apply writes a plan: objects first (services name them), then creates and
// updates, then removals. A failure stops there and says what was done.
func (d stackDeployer) apply(ctx context.Context, plan *stack.Plan, detach bool) error {
	for _, o := range plan.Objects {
		switch o.Action {
		case stack.Create:
			fmt.Fprintf(d.out, "Creating %s %s\n", o.Kind, o.Object.Name)
			if err := d.store.Create(ctx, o.Kind, o.Object.Name, o.Object.Data, o.Object.Labels); err != nil {
				return fmt.Errorf("create %s %s: %w", o.Kind, o.Object.Name, err)
			}
		case stack.Update:
			changed, err := d.store.Update(ctx, o.Kind, o.Object.Name, o.Object.Data)
			if err != nil {
				return fmt.Errorf("update %s %s: %w", o.Kind, o.Object.Name, err)
			}
			if changed {
				fmt.Fprintf(d.out, "Updating %s %s (a new version)\n", o.Kind, o.Object.Name)
			}
		}
	}
	type wait struct {
		name    string
		version uint64 // of a rolling update; 0: wait for convergence
	}
	var waits []wait
	for _, c := range plan.Services {
		switch c.Action {
		case stack.Create:
			fmt.Fprintf(d.out, "Creating service %s\n", c.Name)
			opt, err := d.imageOptions(c.Spec.Image)
			if err != nil {
				return err
			}
			ans, err := retryRefused(ctx, func(ctx context.Context) (api.ServiceCreateAnswer, error) {
				return d.cl.CreateServiceWith(ctx, c.Spec, opt)
			})
			if err != nil {
				return fmt.Errorf("create service %s: %w", c.Name, err)
			}
			printWarnings(d.warn, ans.Warnings)
			waits = append(waits, wait{name: c.Name})
		case stack.Update:
			fmt.Fprintf(d.out, "Updating service %s (id: %s)\n", c.Name, c.Current.ID)
			opt, err := d.imageOptions(c.Spec.Image)
			if err != nil {
				return err
			}
			ans, err := retryRefused(ctx, func(ctx context.Context) (api.ServiceCreateAnswer, error) {
				return d.cl.UpdateServiceWith(ctx, c.Name, api.ServiceUpdateRequest{Version: c.Current.SpecVersion, Spec: c.Spec}, opt)
			})
			if errors.Is(err, api.ErrConflict) {
				return fmt.Errorf("update service %s: %v: it changed since the deploy read it; run the deploy again", c.Name, err)
			}
			if err != nil {
				return fmt.Errorf("update service %s: %w", c.Name, err)
			}
			printWarnings(d.warn, ans.Warnings)
			w := wait{name: c.Name}
			if c.Rolls {
				w.version = ans.SpecVersion
			}
			waits = append(waits, w)
		}
	}
	for _, c := range plan.Services {
		switch c.Action {
		case stack.Remove:
			fmt.Fprintf(d.out, "Removing service %s\n", c.Name)
			if _, err := retryRefused(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, d.cl.RemoveService(ctx, c.Name) }); err != nil {
				return fmt.Errorf("remove service %s: %w", c.Name, err)
			}
		case stack.Kept:
			fmt.Fprintf(d.warn, "Warning: service %s is no longer in the compose files and keeps running: --prune removes it\n", c.Name)
		}
	}
	n := plan.Counts()
	fmt.Fprintf(d.out, "Stack %s: %d created, %d updated, %d removed, %d unchanged\n", plan.Stack, n[stack.Create], n[stack.Update], n[stack.Remove], n[stack.Unchanged]+n[stack.Kept])
	if detach {
		return nil
	}
	for _, w := range waits {
		var err error
		if w.version > 0 && rollsOut(ctx, d.cl, w.name) {
			err = waitRollout(ctx, d.cl, w.name, w.version, false, d.warn)
		} else {
			err = waitConverged(ctx, d.cl, w.name, d.warn) // a job's run, or only a count to reach
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// imageOptions are the image pinning and credentials of one service's write
// (no --resolve-image: the manager's default, always on create and changed on
// update).
func (d stackDeployer) imageOptions(image string) (client.ImageOptions, error) {
	f := imageFlags{withAuth: d.withAuth}
	opt, err := f.options(image, d.warn)
	opt.Resolve = d.resolve
	return opt, err
}

// rollsOut says whether an update of the service is rolling out: a job's update
// starts a new run instead, and a change of only the count or the settings
// rolls nothing.
func rollsOut(ctx context.Context, cl *client.Client, name string) bool {
	svc, err := cl.Service(ctx, name)
	if err != nil {
		return true // waitRollout says what is wrong
	}
	st := svc.UpdateStatus
	return !svc.Spec.Mode.IsJob() && st != nil && st.State == api.UpdateUpdating
}
