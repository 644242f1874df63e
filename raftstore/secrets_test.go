package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func secretBase() []Command {
	return []Command{
		&ClusterInit{ClusterID: "c1", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}, At: t0},
		&SecretCreate{ID: "sec1", Kind: api.KindSecret, Name: "db", Data: []byte("hunter2-v1"), Labels: map[string]string{"team": "a"}, At: t0},
		&SecretCreate{ID: "cfg1", Kind: api.KindConfig, Name: "app.conf", Data: []byte("listen 80"), At: t0},
	}
}

func withFiles(name string, secrets []string, configs ...string) api.ServiceSpec {
	s := spec(name, 1)
	for _, n := range secrets {
		s.Secrets = append(s.Secrets, api.SecretRef{Source: n})
	}
	for _, n := range configs {
		s.Configs = append(s.Configs, api.SecretRef{Source: n})
	}
	return s
}

// TestSecretRefusalsChangeNothing: each bad command is refused in Apply (the API
// checks the same first) with the sentinel callers act on, and nothing changes.
func TestSecretRefusalsChangeNothing(t *testing.T) {
	badMode := withFiles("web2", []string{"db"})
	badMode.Secrets[0].Mode = 0o1777
	badTarget := withFiles("web2", []string{"db"})
	badTarget.Secrets[0].Target = "../etc/passwd"
	clash := withFiles("web2", []string{"db"})
	clash.Configs = []api.SecretRef{{Source: "app.conf", Target: "/run/secrets/db"}}
	cases := []struct {
		name string
		cmd  Command
		want error
		msg  string
	}{
		{"duplicate name", &SecretCreate{ID: "sec9", Kind: api.KindSecret, Name: "db", Data: []byte("x")}, ErrNameTaken, `secret "db"`},
		{"same name other kind is free, same ID is not", &SecretCreate{ID: "sec1", Kind: api.KindConfig, Name: "db", Data: []byte("x")}, ErrNameTaken, "ID sec1"},
		{"bad name", &SecretCreate{ID: "sec9", Kind: api.KindSecret, Name: "-db", Data: []byte("x")}, ErrInvalid, "invalid secret name"},
		{"name too long", &SecretCreate{ID: "sec9", Kind: api.KindSecret, Name: strings.Repeat("a", 65), Data: []byte("x")}, ErrInvalid, "1-64"},
		{"too large", &SecretCreate{ID: "sec9", Kind: api.KindSecret, Name: "big", Data: make([]byte, api.MaxSecretSize+1)}, ErrInvalid, "at most 512000"},
		{"empty", &SecretCreate{ID: "sec9", Kind: api.KindConfig, Name: "e", Data: nil}, ErrInvalid, "config data is empty"},
		{"bad kind", &SecretCreate{ID: "sec9", Kind: "password", Name: "p", Data: []byte("x")}, ErrInvalid, "use secret or config"},
		{"bad ID", &SecretCreate{ID: "../x", Kind: api.KindSecret, Name: "p", Data: []byte("x")}, ErrInvalid, "invalid ID"},
		{"update too large", &SecretUpdate{Kind: api.KindSecret, Name: "db", Data: make([]byte, api.MaxSecretSize+1)}, ErrInvalid, "at most"},
		{"update unknown", &SecretUpdate{Kind: api.KindSecret, Name: "nope", Data: []byte("x")}, ErrNotFound, `secret "nope"`},
		{"update of the other kind", &SecretUpdate{Kind: api.KindConfig, Name: "db", Data: []byte("x")}, ErrNotFound, `config "db"`},
		{"remove unknown", &SecretRemove{Kind: api.KindSecret, Name: "nope"}, ErrNotFound, `secret "nope"`},
		{"remove in use", &SecretRemove{Kind: api.KindSecret, Name: "db"}, api.ErrConflict, `in use by service web`},
		{"service with a missing secret", &ServiceCreate{ID: "s9", Spec: withFiles("web2", []string{"nope"}), At: t0}, ErrNotFound, `secret "nope" not found`},
		{"service with a missing config", &ServiceCreate{ID: "s9", Spec: withFiles("web2", nil, "nope"), At: t0}, ErrNotFound, `config "nope" not found`},
		{"update to a missing secret", &ServiceUpdate{Name: "web", Spec: withFiles("web", []string{"db", "nope"}), At: t0}, ErrNotFound, `secret "nope"`},
		{"bad mode", &ServiceCreate{ID: "s9", Spec: badMode, At: t0}, ErrInvalid, "invalid mode 01777"},
		{"bad target", &ServiceCreate{ID: "s9", Spec: badTarget, At: t0}, ErrInvalid, "invalid target"},
		{"two files at one path", &ServiceCreate{ID: "s9", Spec: clash, At: t0}, ErrInvalid, "both target /run/secrets/db"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			applyAll(t, s, append(secretBase(), &ServiceCreate{ID: "s1", Spec: withFiles("web", []string{"db"}, "app.conf"), At: t0}))
			before := s.Snapshot().Digest()
			_, err := s.Apply(100, tc.cmd)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
			if after := s.Snapshot().Digest(); after != before {
				t.Fatal("a refused command changed the state")
			}
		})
	}
}

// TestSecretLifecycle: references resolve to the stored ID and newest version;
// an update moves every user to a new spec version (an update starts, the old
// spec kept), keeps the versions a spec, a previous spec or a live task still
// names and drops the rest; a rollback returns to the old version; a secret no
// spec uses can be removed.
func TestSecretLifecycle(t *testing.T) {
	s := NewState()
	applyAll(t, s, append(secretBase(),
		&ServiceCreate{ID: "s1", Spec: withFiles("web", []string{"db"}, "app.conf"), At: t0},
		&ServiceCreate{ID: "s2", Spec: withFiles("api", nil, "app.conf"), At: t0},
		&ServiceCreate{ID: "s3", Spec: spec("other", 1), At: t0}))
	ref := func(svc, kind string) api.SecretRef {
		t.Helper()
		sp := s.Snapshot().Service(svc).Spec
		refs := sp.Secrets
		if kind == "config" {
			refs = sp.Configs
		}
		if len(refs) != 1 {
			t.Fatalf("%s has %d %s refs", svc, len(refs), kind)
		}
		return refs[0]
	}
	if r := ref("web", "secret"); r.ID != "sec1" || r.Version != 1 || r.Target != "db" || r.Mode != 0o444 {
		t.Fatalf("resolved %+v", r)
	}
	if r := ref("web", "config"); r.ID != "cfg1" || r.Version != 1 || r.Target != "/app.conf" {
		t.Fatalf("resolved config %+v", r)
	}
	has := func(id string, v uint64) bool {
		_, ok := s.Snapshot().SecretValue(api.KindSecret, id, v)
		return ok
	}

	res, err := s.Apply(s.Index()+1, &SecretUpdate{Kind: api.KindSecret, Name: "db", Data: []byte("hunter2-v2"), At: t0})
	if err != nil {
		t.Fatal(err)
	}
	up := res.(*SecretUpdated)
	if up.Secret.Version != 2 || len(up.Services) != 1 || up.Services[0].Spec.Name != "web" || up.Secret.Data != nil {
		t.Fatalf("update answer %+v", up)
	}
	web := s.Snapshot().Service("web")
	if web.SpecVersion != 2 || web.UpdateStatus == nil || web.UpdateStatus.State != api.UpdateUpdating ||
		web.PreviousSpec.Secrets[0].Version != 1 || ref("web", "secret").Version != 2 {
		t.Fatalf("web after the secret update: version %d, status %+v, previous %+v", web.SpecVersion, web.UpdateStatus, web.PreviousSpec.Secrets)
	}
	if api.SameTaskSpec(*web.PreviousSpec, web.Spec) {
		t.Fatal("the new version does not change what tasks run: nothing would roll")
	}
	if s.Snapshot().Service("api").SpecVersion != 1 || s.Snapshot().Service("other").SpecVersion != 1 {
		t.Fatal("a service that does not use the secret was moved")
	}
	if !has("sec1", 1) || !has("sec1", 2) {
		t.Fatal("v1 is the previous spec's, v2 the spec's: both are kept")
	}

	// The same value again is no new version and moves nothing.
	before := s.Snapshot().Digest()
	res, err = s.Apply(s.Index()+1, &SecretUpdate{Kind: api.KindSecret, Name: "db", Data: []byte("hunter2-v2"), At: t0})
	if err != nil || res.(*SecretUpdated).Secret.Version != 2 || len(res.(*SecretUpdated).Services) != 0 || s.Snapshot().Digest() != before {
		t.Fatalf("same value: %+v, %v", res, err)
	}
	if evs, _ := s.Snapshot().Events(0, 0); evs[len(evs)-1].Attributes["version"] != "2" || evs[len(evs)-1].Type != api.EventService {
		t.Fatalf("same value: last event %+v", evs[len(evs)-1])
	}

	// A live task of v2 keeps v2 when the next update moves the spec on.
	task := &api.Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, Spec: web.Spec, SpecVersion: 2, DesiredState: api.TaskRunning,
		Status: api.TaskStatus{State: api.TaskNew, Timestamp: t0}}
	applyAll2(t, s, &TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpCreate, Task: task}}},
		&SecretUpdate{Kind: api.KindSecret, Name: "db", Data: []byte("hunter2-v3"), At: t0})
	if has("sec1", 1) || !has("sec1", 2) || !has("sec1", 3) {
		t.Fatalf("after v3: v1 %v (nothing names it), v2 %v (the previous spec and a task do), v3 %v", has("sec1", 1), has("sec1", 2), has("sec1", 3))
	}
	if d, _ := s.Snapshot().SecretValue(api.KindSecret, "sec1", 3); string(d) != "hunter2-v3" {
		t.Fatalf("v3 %q", d)
	}
	if _, ok := s.Snapshot().SecretValue(api.KindConfig, "sec1", 3); ok {
		t.Fatal("a secret read as a config")
	}

	// Rollback returns to the previous spec's version, which is still stored.
	applyAll2(t, s, &ServiceRollback{Name: "web", At: t0})
	if r := ref("web", "secret"); r.Version != 2 {
		t.Fatalf("rolled back to %+v", r)
	}
	// An unrelated update keeps the version the spec names.
	sp := s.Snapshot().Service("web").Spec.Clone()
	sp.Env = []string{"A=1"}
	applyAll2(t, s, &ServiceUpdate{Name: "web", Spec: sp, At: t0})
	if r := ref("web", "secret"); r.Version != 2 {
		t.Fatalf("an env change moved the secret to %+v", r)
	}
	// A spec naming the secret without ID or version (a stack file) gets the newest.
	applyAll2(t, s, &ServiceUpdate{Name: "api", Spec: withFiles("api", []string{"db"}, "app.conf"), At: t0})
	if r := ref("api", "secret"); r.ID != "sec1" || r.Version != 3 {
		t.Fatalf("fresh reference %+v", r)
	}

	_, err = s.Apply(s.Index()+1, &SecretRemove{Kind: api.KindSecret, Name: "db"})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "service api, web") {
		t.Fatalf("remove in use: %v", err)
	}
	applyAll2(t, s, &ServiceUpdate{Name: "web", Spec: withFiles("web", nil, "app.conf"), At: t0},
		&ServiceRemove{Name: "api", At: t0},
		&SecretRemove{Kind: api.KindSecret, Name: "db", At: t0})
	if s.Snapshot().Secret(api.KindSecret, "db") != nil || has("sec1", 3) {
		t.Fatal("removed secret still stored")
	}
	// The config is still in use by web: refused, naming it.
	if _, err := s.Apply(s.Index()+1, &SecretRemove{Kind: api.KindConfig, Name: "app.conf"}); err == nil || !strings.Contains(err.Error(), "service web") {
		t.Fatalf("config remove in use: %v", err)
	}
	// The previous spec used the removed secret: a rollback is refused, clearly.
	if _, err := s.Apply(s.Index()+1, &ServiceRollback{Name: "web", At: t0}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `secret "db" not found`) {
		t.Fatalf("rollback to a removed secret: %v", err)
	}
	// A config update moves its users the same way.
	res, err = s.Apply(s.Index()+1, &SecretUpdate{Kind: api.KindConfig, Name: "app.conf", Data: []byte("listen 81"), At: t0})
	if err != nil || len(res.(*SecretUpdated).Services) != 1 || ref("web", "config").Version != 2 || string(res.(*SecretUpdated).Secret.Data) != "listen 81" {
		t.Fatalf("config update: %+v %v", res, err)
	}
}

// TestSecretValuesStayInTheirTable: no read of services, tasks, secrets or
// events carries a secret's value; configs show theirs; a snapshot carries
// every kept version and restores to the same state.
func TestSecretValuesStayInTheirTable(t *testing.T) {
	s := NewState()
	applyAll(t, s, append(secretBase(),
		&ServiceCreate{ID: "s1", Spec: withFiles("web", []string{"db"}, "app.conf"), At: t0},
		&SecretUpdate{Kind: api.KindSecret, Name: "db", Data: []byte("hunter2-v2"), At: t0}))
	v := s.Snapshot()
	reads := []any{v.Services(), v.Tasks(), v.Secrets(api.KindSecret), v.Secret(api.KindSecret, "db"), v.Secret(api.KindSecret, "sec1")}
	evs, _ := v.Events(0, 0)
	reads = append(reads, evs)
	for _, r := range reads {
		b, _ := json.Marshal(r)
		if bytes.Contains(b, []byte("hunter2")) || bytes.Contains(b, []byte("aHVudGVyM")) {
			t.Fatalf("a read shows the secret's value: %s", b)
		}
	}
	if sec := v.Secret(api.KindSecret, "db"); sec == nil || sec.Version != 2 || sec.Labels["team"] != "a" || sec.Data != nil {
		t.Fatalf("secret %+v", sec)
	}
	if cfg := v.Secrets(api.KindConfig); len(cfg) != 1 || string(cfg[0].Data) != "listen 80" {
		t.Fatalf("configs %+v", cfg)
	}
	if v.Secret(api.KindConfig, "db") != nil || v.Secret(api.KindConfig, "sec1") != nil {
		t.Fatal("a secret found as a config")
	}
	var updates int
	for _, e := range evs {
		if e.Type == api.EventService && e.Action == "update" && e.Attributes["secret"] == "db" {
			updates++
		}
	}
	if updates != 1 {
		t.Fatalf("%d service update events naming the secret", updates)
	}

	var buf bytes.Buffer
	if _, err := v.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if a, b := v.Digest(), r.Snapshot().Digest(); a != b {
		t.Fatalf("digest %s != %s", a, b)
	}
	for ver, want := range map[uint64]string{1: "hunter2-v1", 2: "hunter2-v2"} {
		if d, ok := r.Snapshot().SecretValue(api.KindSecret, "sec1", ver); !ok || string(d) != want {
			t.Fatalf("restored v%d %q", ver, d)
		}
	}
	// The restored table keeps its indexes: names stay unique.
	if _, err := r.Apply(r.Index()+1, &SecretCreate{ID: "sec2", Kind: api.KindSecret, Name: "db", Data: []byte("x")}); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate after restore: %v", err)
	}
}
