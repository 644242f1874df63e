package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// swarmlet secret|config create|ls|inspect|rm|update: docker's commands, one
// implementation for both kinds. A secret's value is never printed (the API
// does not have it to give); a config's is shown by inspect, base64 in .data as
// docker shows Spec.Data. update is beyond docker: a new version, to which the
// services that use it roll under their update settings.

func newSecretCmd() *cobra.Command { return newSecretGroup(api.KindSecret) }
func newConfigCmd() *cobra.Command { return newSecretGroup(api.KindConfig) }

func newSecretGroup(kind api.SecretKind) *cobra.Command {
	k := string(kind)
	c := newGroup(k, "Manage "+k+"s: values tasks get as files")
	c.AddCommand(newSecretCreate(kind), newSecretLs(kind), newSecretInspect(kind), newSecretRm(kind), newSecretUpdate(kind))
	return c
}

// readSecretData reads FILE, or standard input for "-", refusing more than
// the cluster stores before anything is sent.
func readSecretData(kind api.SecretKind, arg string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if arg != "-" {
		f, err := os.Open(arg)
		if err != nil {
			return nil, fmt.Errorf("read %s data: %w", kind, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, api.MaxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s data: %w", kind, err)
	}
	if len(data) > api.MaxSecretSize {
		return nil, fmt.Errorf("%s data is larger than %d bytes (500 KB), the most the cluster stores", kind, api.MaxSecretSize)
	}
	return data, api.ValidateSecretData(kind, data)
}

func newSecretCreate(kind api.SecretKind) *cobra.Command {
	var labels []string
	k := string(kind)
	c := &cobra.Command{
		Use: "create [--label K=V] NAME FILE|-", Short: "Store a " + k + " from a file or standard input", Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			req := api.SecretCreateRequest{Name: args[0]}
			if err := api.ValidateSecretName(kind, req.Name); err != nil {
				return err
			}
			for _, kv := range labels {
				key, v, ok := strings.Cut(kv, "=")
				if !ok || key == "" {
					return fmt.Errorf("invalid --label %q: expected KEY=VALUE", kv)
				}
				if req.Labels == nil {
					req.Labels = map[string]string{}
				}
				req.Labels[key] = v
			}
			var err error
			if req.Data, err = readSecretData(kind, args[1], c.InOrStdin()); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			sec, err := retryRefused(ctx, func(ctx context.Context) (api.Secret, error) { return cl.CreateSecret(ctx, kind, req) })
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), sec.ID)
			return nil
		},
	}
	c.Flags().StringArrayVarP(&labels, "label", "l", nil, k+" label K=V")
	return c
}

// secretRow is a secret or config as `ls --format json` lists it.
type secretRow struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Version uint64            `json:"version"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	Labels  map[string]string `json:"labels,omitempty"`
	UsedBy  []string          `json:"used_by,omitempty"`
}

// secretView is a row as templates see it, in docker's field names.
type secretView struct {
	ID, Name, CreatedAt, UpdatedAt, Labels, Services string
	Version                                          uint64
}

func secretListing(noTrunc *bool) listing[secretRow] {
	return listing[secretRow]{
		table: "table {{.ID}}\t{{.Name}}\t{{.Version}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
		headers: map[string]string{"ID": "ID", "Name": "NAME", "Version": "VERSION", "CreatedAt": "CREATED", "UpdatedAt": "UPDATED",
			"Labels": "LABELS", "Services": "SERVICES"},
		id: func(r secretRow) string { return r.ID },
		view: func(r secretRow) any {
			ago := func(t time.Time) string {
				if t.IsZero() {
					return ""
				}
				return units.HumanDuration(now().Sub(t)) + " ago"
			}
			return secretView{ID: shortID(r.ID, *noTrunc), Name: r.Name, Version: r.Version, CreatedAt: ago(r.Created), UpdatedAt: ago(r.Updated),
				Labels: labelString(r.Labels), Services: strings.Join(r.UsedBy, ",")}
		},
	}
}

var secretFilterKeys = []string{"id", "name", "label"}

func secretRows(secs []api.Secret, f filters) []secretRow {
	rows := make([]secretRow, 0, len(secs))
	for _, s := range secs {
		ok := f.match(func(k, v string) bool {
			switch k {
			case "id":
				return idMatch(s.ID, v)
			case "name":
				return nameMatch(s.Name, v)
			case "label":
				return labelMatch(s.Labels, v)
			}
			return false
		})
		if ok {
			rows = append(rows, secretRow{ID: s.ID, Name: s.Name, Version: s.Version, Created: s.CreatedAt, Updated: s.UpdatedAt, Labels: s.Labels, UsedBy: s.UsedBy})
		}
	}
	return rows
}

func newSecretLs(kind api.SecretKind) *cobra.Command {
	var o output
	var raw []string
	c := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List " + string(kind) + "s", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f, err := parseFilters(raw, secretFilterKeys)
			if err != nil {
				return err
			}
			l := secretListing(&o.noTrunc)
			if _, err := parseFormat(o.format, l.table, secretView{}); err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			secs, err := cl.Secrets(ctx, kind)
			if err != nil {
				return err
			}
			return l.print(c.OutOrStdout(), o, secretRows(secs, f))
		},
	}
	o.flags(c, "IDs")
	o.truncFlag(c)
	filterFlag(c, &raw, secretFilterKeys)
	return c
}

func newSecretInspect(kind api.SecretKind) *cobra.Command {
	k := string(kind)
	short := "Show secrets in full, never their values"
	if kind == api.KindConfig {
		short = "Show configs in full, their values base64 in .data"
	}
	return newInspect("inspect "+strings.ToUpper(k)+"...", short,
		func(cl *client.Client, ctx context.Context, name string) (api.Secret, error) {
			return cl.Secret(ctx, kind, name)
		})
}

func newSecretRm(kind api.SecretKind) *cobra.Command {
	k := string(kind)
	return &cobra.Command{
		Use: "rm " + strings.ToUpper(k) + "...", Aliases: []string{"remove"}, Short: "Remove " + k + "s no service uses", Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			for _, a := range args {
				if _, err := retryRefused(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, cl.RemoveSecret(ctx, kind, a) }); err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), a)
			}
			return nil
		},
	}
}

func newSecretUpdate(kind api.SecretKind) *cobra.Command {
	var detach bool
	k := string(kind)
	c := &cobra.Command{
		Use:   "update [--detach] NAME FILE|-",
		Short: "Give a " + k + " a new value (a new version); the services that use it roll to it under their update settings",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			data, err := readSecretData(kind, args[1], c.InOrStdin())
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			res, err := retryRefused(ctx, func(ctx context.Context) (api.SecretUpdateAnswer, error) {
				return cl.UpdateSecret(ctx, kind, args[0], data)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s %s: version %d\n", k, res.Name, res.Version)
			if len(res.Services) > 0 {
				fmt.Fprintf(c.OutOrStdout(), "rolling out to %s\n", strings.Join(res.Services, ", "))
			}
			if detach {
				return nil
			}
			for _, name := range res.Services {
				svc, err := cl.Service(ctx, name)
				if err == nil {
					err = waitRollout(ctx, cl, name, svc.SpecVersion, false, c.ErrOrStderr())
				}
				if err != nil {
					return fmt.Errorf("%s %s is at version %d, but service %s: %w", k, res.Name, res.Version, name, err)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for the services' rollouts")
	return c
}
