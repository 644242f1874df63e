package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/images"
)

func newImageCmd() *cobra.Command {
	c := newGroup("image", "Manage the images of a node")
	c.AddCommand(newImagePrune())
	return c
}

func newImagePrune() *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove the images this node fetched that no task or container uses",
		Long: "Removes, on the node --host names, the images swarmlet pulled or fetched from other nodes\n" +
			"that none of the node's tasks and no container on its engine uses. Images built or pulled\n" +
			"by hand are never touched, and neither is any image in use.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			rep, err := cl.PruneImages(ctx)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			for _, im := range rep.Removed {
				fmt.Fprintf(out, "deleted: %s %s\n", im.ID, strings.Join(im.Tags, " "))
			}
			fmt.Fprintf(out, "Total reclaimed space: %s (%d kept in use)\n", images.HumanSize(rep.Reclaimed), rep.InUse)
			return nil
		},
	}
}

// imageFlags are create's (and update's) image flags, as docker spells them.
type imageFlags struct {
	withAuth  bool
	noResolve bool
}

func (f *imageFlags) add(c *cobra.Command) {
	c.Flags().BoolVar(&f.withAuth, "with-registry-auth", false, "send the docker client's login for the image's registry (~/.docker/config.json) to the nodes that run the service")
	c.Flags().BoolVar(&f.noResolve, "no-resolve-image", false, "do not pin the image to a digest: each node runs what the name means to it")
}

// options reads the docker client's credentials when asked to; notes go to warn.
func (f *imageFlags) options(image string, warn io.Writer) (client.ImageOptions, error) {
	var opt client.ImageOptions
	if f.noResolve {
		opt.Resolve = api.ResolveNever
	}
	if !f.withAuth {
		return opt, nil
	}
	dir := images.DockerConfigDir()
	a, found, err := images.CredentialsFor(dir, image)
	if err != nil {
		return opt, err
	}
	if !found {
		fmt.Fprintf(warn, "Warning: no login for the registry of %s in %s/config.json: sending no credentials\n", image, dir)
		return opt, nil
	}
	opt.RegistryAuth = images.EncodeAuth(a)
	return opt, nil
}

func printWarnings(w io.Writer, ws []string) {
	for _, s := range ws {
		fmt.Fprintf(w, "Warning: %s\n", s)
	}
}

// preparingProgress is a preparing task's message ("" for any other task).
func preparingProgress(t *api.Task) string {
	if t.Status.State != api.TaskPreparing || t.Status.Message == "preparing" {
		return ""
	}
	return t.Status.Message
}

// preparingLine is what the progress display shows for a task still preparing
// (pulling or fetching its image), "" for any other.
func preparingLine(t *api.Task) string {
	p := preparingProgress(t)
	if p == "" {
		return ""
	}
	return fmt.Sprintf("%s: preparing: %s", taskName(t), p)
}
