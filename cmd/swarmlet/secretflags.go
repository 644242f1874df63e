package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
)

// --secret and --config on service create; --secret-add/-rm and --config-add/-rm
// on service update: docker's short syntax (NAME) and long one
// (source=NAME,target=T,uid=U,gid=G,mode=0400). The cluster checks that each
// name is stored and binds it to the newest version.

// registerFileFlags adds the flags: create's, or update's.
func registerFileFlags(f *pflag.FlagSet, create bool) {
	const form = " NAME or source=NAME,target=T,uid=U,gid=G,mode=0400"
	if create {
		f.StringArray("secret", nil, "give tasks a stored secret as a file (/run/secrets/TARGET; process engine: $"+"SWARMLET_SECRETS_DIR/TARGET):"+form)
		f.StringArray("config", nil, "give tasks a stored config as a file (default target /NAME; process engine: $"+"SWARMLET_CONFIGS_DIR/TARGET):"+form)
		return
	}
	f.StringArray("secret-add", nil, "add or replace a secret:"+form)
	f.StringArray("secret-rm", nil, "remove a secret by name")
	f.StringArray("config-add", nil, "add or replace a config:"+form)
	f.StringArray("config-rm", nil, "remove a config by name")
}

// applyFileFlags changes spec as the flags given say: removals first, then
// additions (an addition replaces a reference of the same name and target).
func applyFileFlags(f *pflag.FlagSet, spec *api.ServiceSpec) error {
	for _, l := range []struct {
		kind api.SecretKind
		refs *[]api.SecretRef
	}{{api.KindSecret, &spec.Secrets}, {api.KindConfig, &spec.Configs}} {
		k := string(l.kind)
		if rm, err := f.GetStringArray(k + "-rm"); err == nil {
			for _, name := range rm {
				n := len(*l.refs)
				*l.refs = slices.DeleteFunc(*l.refs, func(r api.SecretRef) bool { return r.Source == name || r.ID == name })
				if len(*l.refs) == n {
					return fmt.Errorf("--%s-rm %s: the service has no %s of that name", k, name, k)
				}
			}
		}
		var add []string
		for _, name := range []string{k, k + "-add"} {
			if v, err := f.GetStringArray(name); err == nil {
				add = append(add, v...)
			}
		}
		for _, s := range add {
			r, err := parseSecretRef(l.kind, s)
			if err != nil {
				return err
			}
			*l.refs = slices.DeleteFunc(*l.refs, func(o api.SecretRef) bool { return o.Source == r.Source && o.Target == r.Target })
			*l.refs = append(*l.refs, r)
		}
	}
	return nil
}

// parseSecretRef reads NAME or source=,target=,uid=,gid=,mode= (src and
// destination spelled as docker also takes them). Targets are normalized as the
// spec normalizes them, so an addition finds the reference it replaces.
func parseSecretRef(kind api.SecretKind, s string) (api.SecretRef, error) {
	k := string(kind)
	var r api.SecretRef
	if !strings.Contains(s, "=") {
		r.Source = s
	} else {
		for _, kv := range strings.Split(s, ",") {
			key, v, ok := strings.Cut(kv, "=")
			if !ok {
				return r, fmt.Errorf("invalid --%s %q: %q is not KEY=VALUE (keys: source, target, uid, gid, mode)", k, s, kv)
			}
			switch strings.ToLower(strings.TrimSpace(key)) {
			case "source", "src":
				r.Source = v
			case "target", "dst", "destination":
				r.Target = v
			case "uid":
				r.UID = v
			case "gid":
				r.GID = v
			case "mode":
				m, err := strconv.ParseUint(v, 8, 32)
				if err != nil {
					return r, fmt.Errorf("invalid --%s %q: mode %q is not an octal number such as 0400", k, s, v)
				}
				r.Mode = os.FileMode(m)
			default:
				return r, fmt.Errorf("invalid --%s %q: unknown key %q (keys: source, target, uid, gid, mode)", k, s, key)
			}
		}
	}
	if r.Source == "" {
		return r, fmt.Errorf("invalid --%s %q: source= names the stored %s", k, s, k)
	}
	sp := api.ServiceSpec{}
	if kind == api.KindSecret {
		sp.Secrets = []api.SecretRef{r}
	} else {
		sp.Configs = []api.SecretRef{r}
	}
	sp.Normalize()
	if kind == api.KindSecret {
		return sp.Secrets[0], nil
	}
	return sp.Configs[0], nil
}

// refStrings names references as NAME@VERSION (service ps --format json).
func refStrings(refs []api.SecretRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.String())
	}
	return out
}
