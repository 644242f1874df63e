package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
)

func TestParseSecretRef(t *testing.T) {
	for _, tc := range []struct {
		kind api.SecretKind
		in   string
		want api.SecretRef
		err  string
	}{
		{api.KindSecret, "db", api.SecretRef{Source: "db", Target: "db", Mode: 0o444}, ""},
		{api.KindSecret, "source=db,target=pw,uid=1000,gid=1001,mode=0400", api.SecretRef{Source: "db", Target: "pw", UID: "1000", GID: "1001", Mode: 0o400}, ""},
		{api.KindSecret, "src=db,dst=/etc/pw,mode=440", api.SecretRef{Source: "db", Target: "/etc/pw", Mode: 0o440}, ""},
		{api.KindConfig, "app.conf", api.SecretRef{Source: "app.conf", Target: "/app.conf", Mode: 0o444}, ""},
		{api.KindConfig, "source=app.conf,target=etc/app.conf", api.SecretRef{Source: "app.conf", Target: "/etc/app.conf", Mode: 0o444}, ""},
		{api.KindSecret, "source=db,mode=rw", api.SecretRef{}, `mode "rw" is not an octal number`},
		{api.KindSecret, "source=db,mode=0999", api.SecretRef{}, "not an octal number"},
		{api.KindSecret, "target=x", api.SecretRef{}, "source= names the stored secret"},
		{api.KindSecret, "source=db,owner=me", api.SecretRef{}, `unknown key "owner"`},
		{api.KindSecret, "source=db,target", api.SecretRef{}, "is not KEY=VALUE"},
	} {
		got, err := parseSecretRef(tc.kind, tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %q: got %v, want an error with %q", tc.kind, tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %q = %+v, %v; want %+v", tc.kind, tc.in, got, err, tc.want)
		}
	}
}

// Update's flags: removals first, then additions; an addition replaces the
// reference of the same name and target; removing one the service lacks is an
// error.
func TestApplyFileFlags(t *testing.T) {
	base := api.ServiceSpec{Secrets: []api.SecretRef{{Source: "db", Target: "db", Mode: 0o444, ID: "x", Version: 3}, {Source: "tls", Target: "tls", Mode: 0o444}},
		Configs: []api.SecretRef{{Source: "app", Target: "/app", Mode: 0o444}}}
	for _, tc := range []struct {
		args             []string
		secrets, configs []string
		err              string
	}{
		{nil, []string{"db@3", "tls"}, []string{"app"}, ""},
		{[]string{"--secret-rm", "tls"}, []string{"db@3"}, []string{"app"}, ""},
		{[]string{"--secret-add", "source=db,mode=0400"}, []string{"tls", "db"}, []string{"app"}, ""},
		{[]string{"--secret-add", "source=db,target=copy"}, []string{"db@3", "tls", "db"}, []string{"app"}, ""},
		{[]string{"--config-rm", "app", "--config-add", "other"}, []string{"db@3", "tls"}, []string{"other"}, ""},
		{[]string{"--secret-rm", "nope"}, nil, nil, "the service has no secret of that name"},
	} {
		f := pflag.NewFlagSet("update", pflag.ContinueOnError)
		registerFileFlags(f, false)
		if err := f.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		spec := base.Clone()
		err := applyFileFlags(f, &spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: got %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(refStrings(spec.Secrets), tc.secrets) || !reflect.DeepEqual(refStrings(spec.Configs), tc.configs) {
			t.Errorf("%v: secrets %v configs %v, %v; want %v %v", tc.args, refStrings(spec.Secrets), refStrings(spec.Configs), err, tc.secrets, tc.configs)
		}
	}
}
