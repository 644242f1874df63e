package stack

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// stored is spec as the cluster returns it: through JSON, with the manager's
// own additions (image pins, the force counter, versions).
func stored(t *testing.T, spec api.ServiceSpec, version uint64) api.Service {
	t.Helper()
	spec.ImageDigest, spec.ImageID = "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	spec.ForceUpdate = 2
	b, err := json.Marshal(api.Service{ID: "id" + spec.Name, Spec: spec, SpecVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	// The manager resolves each secret reference to the stored object's ID
	// and version (by JSON, as those fields are the secrets work's).
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	sp := raw["spec"].(map[string]any)
	if refs, ok := sp["secrets"].([]any); ok {
		for _, r := range refs {
			r.(map[string]any)["id"], r.(map[string]any)["version"] = "sid", 3
		}
	}
	b, _ = json.Marshal(raw)
	var s api.Service
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

const planFile = `services:
  web:
    image: whoami:1
    ports: ["8080:80"]
    deploy: {replicas: 2, update_config: {parallelism: 1, order: start-first}}
    healthcheck: {test: ["CMD", "/whoami", "healthcheck"], interval: 1s}
  api:
    image: api:1
    environment: {A: "1"}
  db:
    image: db:1
    secrets: [pw]
secrets:
  pw: {file: ./pw.txt}
`

func TestPlan(t *testing.T) {
	st := mustLoad(t, planFile, "pw.txt", "hunter2")
	var cluster []api.Service
	for _, s := range st.Services {
		cluster = append(cluster, stored(t, s, 3))
	}
	objs := map[string]ObjectState{"secret/shop_pw": {Exists: true, Stack: "shop"}}

	t.Run("first deploy creates everything", func(t *testing.T) {
		p, err := PlanDeploy(st, nil, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if n := p.Counts(); n[Create] != 3 || len(p.Services) != 3 || p.Objects[0].Action != Create {
			t.Fatalf("%v %+v", n, p.Objects)
		}
	})
	t.Run("the same file changes nothing", func(t *testing.T) {
		p, err := PlanDeploy(mustLoad(t, planFile, "pw.txt", "hunter2"), cluster, objs, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Services {
			if c.Action != Unchanged {
				t.Fatalf("%s: %s %+v", c.Name, c.Action, c.Fields)
			}
		}
	})
	t.Run("one changed service is the one update", func(t *testing.T) {
		changed := strings.Replace(planFile, "whoami:1", "whoami:2", 1)
		changed = strings.Replace(changed, "replicas: 2", "replicas: 3", 1)
		p, err := PlanDeploy(mustLoad(t, changed, "pw.txt", "hunter2"), cluster, objs, false)
		if err != nil {
			t.Fatal(err)
		}
		n := p.Counts()
		if n[Update] != 1 || n[Unchanged] != 2 {
			t.Fatalf("%v", n)
		}
		var web ServiceChange
		for _, c := range p.Services {
			if c.Name == "shop_web" {
				web = c
			}
		}
		if web.Action != Update || !web.Rolls || web.Spec.ForceUpdate != 2 || web.Current.SpecVersion != 3 {
			t.Fatalf("%+v", web)
		}
		var paths []string
		for _, f := range web.Fields {
			paths = append(paths, f.Path)
		}
		if strings.Join(paths, ",") != "image,labels.com.docker.stack.image,replicas" {
			t.Fatalf("fields %q", paths)
		}
	})
	t.Run("replicas and update settings roll no task", func(t *testing.T) {
		f := strings.NewReplacer("replicas: 2", "replicas: 4", "parallelism: 1", "parallelism: 2").Replace(planFile)
		p, err := PlanDeploy(mustLoad(t, f, "pw.txt", "x"), cluster, objs, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Services {
			if c.Name == "shop_web" && (c.Action != Update || c.Rolls || len(c.Fields) != 2) {
				t.Fatalf("%+v", c)
			}
		}
	})
	t.Run("a service gone from the file: kept, or removed with prune", func(t *testing.T) {
		less := strings.Replace(planFile, "  api:\n    image: api:1\n    environment: {A: \"1\"}\n", "", 1)
		for _, prune := range []bool{false, true} {
			p, err := PlanDeploy(mustLoad(t, less, "pw.txt", "x"), cluster, objs, prune)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]Action{false: Kept, true: Remove}[prune]
			if p.Services[0].Name != "shop_api" || p.Services[0].Action != want {
				t.Fatalf("prune=%v: %+v", prune, p.Services[0])
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		foreign := stored(t, api.ServiceSpec{Name: "shop_api", Image: "x", Mode: api.ModeReplicated}, 1)
		if _, err := PlanDeploy(st, []api.Service{foreign}, nil, false); err == nil || !strings.Contains(err.Error(), "service shop_api exists and is not part of stack shop (made outside any stack)") {
			t.Fatalf("foreign service: %v", err)
		}
		global := stored(t, st.Services[0], 1)
		global.Spec.Mode = api.ModeGlobal
		if _, err := PlanDeploy(st, []api.Service{global}, nil, false); err == nil || !strings.Contains(err.Error(), "mode cannot change") {
			t.Fatalf("mode change: %v", err)
		}
		if _, err := PlanDeploy(st, nil, map[string]ObjectState{"secret/shop_pw": {Exists: true, Stack: "other"}}, false); err == nil || !strings.Contains(err.Error(), "belongs to stack other") {
			t.Fatalf("a secret of another stack: %v", err)
		}
		ext := mustLoad(t, "services:\n  w:\n    image: x\n    secrets: [k]\nsecrets:\n  k: {external: true}\n")
		if _, err := PlanDeploy(ext, nil, nil, false); err == nil || !strings.Contains(err.Error(), "secret k is external and does not exist") {
			t.Fatalf("missing external secret: %v", err)
		}
		if p, err := PlanDeploy(ext, nil, map[string]ObjectState{"secret/k": {Exists: true}}, false); err != nil || p.Objects[0].Action != Unchanged {
			t.Fatalf("existing external secret: %v", err)
		}
	})
}

func TestPlanWrite(t *testing.T) {
	st := mustLoad(t, planFile, "pw.txt", "hunter2")
	cluster := []api.Service{stored(t, st.Services[2], 1), stored(t, api.ServiceSpec{Name: "shop_old", Image: "o", Mode: api.ModeReplicated,
		Labels: map[string]string{api.LabelStackNamespace: "shop"}}, 1)}
	cluster[0].Spec.Image = "whoami:0"
	p, err := PlanDeploy(st, cluster, map[string]ObjectState{"secret/shop_pw": {Exists: true, Stack: "shop"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	p.Write(&b)
	want := `+ service shop_api (create)
+ service shop_db (create)
- service shop_old (remove)
~ service shop_web (update: rolling update, 1 at a time, start-first)
    ~ image: "whoami:0" => "whoami:1"
~ secret shop_pw (a new version if file ` + st.Secrets[0].From[len("file "):] + ` differs from what is stored)

Plan: 2 to create, 1 to update, 1 to remove, 0 unchanged.
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if strings.Contains(b.String(), "hunter2") {
		t.Fatal("the plan shows a secret's data")
	}
}
