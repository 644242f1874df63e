package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// The stack tests use 127.88.x.x (process engine) and 127.89.x.x (docker
// engine), ports from 29000.

// stackFile is a stack of three services for the process engine: web with a
// published port, a health check and update settings; api and worker plain.
// @PROG@ is the program, @VER@ web's version.
const stackFile = `services:
  web:
    image: "@PROG@"
    ports: ["29080:80"]
    environment: {WHOAMI_VERSION: "@VER@"}
    healthcheck:
      test: ["CMD", "@PROG@", "healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: 2
      update_config: {parallelism: 1, delay: 500ms, order: start-first, monitor: 1s, failure_action: rollback}
  api:
    image: "@PROG@"
    ports: ["80"]
    deploy:
      labels: {tier: back}
  worker:
    image: "@PROG@"
    ports: ["80"]
    deploy:
      restart_policy: {condition: on-failure}
`

func writeStack(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stackState is each service of the cluster by name: its spec version and the
// IDs of its tasks meant to run.
func stackState(t *testing.T, cl *client.Client) map[string]serviceState {
	t.Helper()
	svcs, _, err := cl.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]serviceState{}
	for _, s := range svcs {
		st := serviceState{version: s.SpecVersion, stack: s.Spec.Labels[api.LabelStackNamespace]}
		for _, tk := range apiTasks(t, cl, s.Spec.Name) {
			if tk.DesiredState == api.TaskRunning {
				st.tasks = append(st.tasks, tk.ID)
			}
		}
		slices.Sort(st.tasks)
		out[s.Spec.Name] = st
	}
	return out
}

type serviceState struct {
	version uint64
	stack   string
	tasks   []string
}

func (a serviceState) same(b serviceState) bool {
	return a.version == b.version && a.stack == b.stack && slices.Equal(a.tasks, b.tasks)
}

// TestStackDeploy: a compose file of three services deploys and answers on its
// published port; the stack's commands list it; a redeploy of the same file
// changes nothing (no spec version moves); a changed file updates the one
// service that changed, under its update settings; --dry-run changes nothing;
// a service gone from the file stays until --prune; stack rm removes it all.
// Bad input changes nothing.
func TestStackDeploy(t *testing.T) {
	c := newCluster(t, 88)
	c.extra = []string{"--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "29000", "--pool", poolFor(88)}
	c.start(1, "", "--service-range", "10.250.88.0/24")
	cl, err := client.New(c.sock(1), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(version string) string {
		return strings.NewReplacer("@PROG@", whoamiBin, "@VER@", version).Replace(stackFile)
	}
	f1 := writeStack(t, dir, "v1.yml", file("1"))

	// Bad input: one clear line, nothing created.
	bad := writeStack(t, dir, "bad.yml", "services:\n  web:\n    image: x\n    replicas: 3\n")
	c.expectError(t, 1, "unknown key services.web.replicas", "stack", "deploy", "-c", bad, "shop")
	c.expectError(t, 1, `invalid stack name "Shop"`, "stack", "deploy", "-c", f1, "Shop")
	c.expectError(t, 1, "no such file", "stack", "deploy", "-c", filepath.Join(dir, "missing.yml"), "shop")
	if s := stackState(t, cl); len(s) != 0 {
		t.Fatalf("bad input created %v", s)
	}
	// What a stack does not do is a warning naming it, and the rest deploys.
	warned := writeStack(t, dir, "warned.yml", "services:\n  web:\n    image: "+whoamiBin+"\n    build: .\n    depends_on: [db]\n  db:\n    image: "+whoamiBin+"\n")
	out, errOut, err := c.cli(1, "stack", "deploy", "--dry-run", "-c", warned, "shop")
	if err != nil || !strings.Contains(errOut, "Warning: services.web.build is not supported and is ignored") ||
		!strings.Contains(errOut, "Warning: services.web.depends_on is not supported") || !strings.Contains(out, "+ service shop_web (create)") {
		t.Fatalf("warnings: %v\n%s\n%s", err, errOut, out)
	}

	// A dry run of a new stack lists what it would create, and creates nothing.
	out = c.mustCLI(1, "stack", "deploy", "--dry-run", "-c", f1, "shop")
	for _, want := range []string{"+ service shop_api (create)", "+ service shop_web (create)", "+ service shop_worker (create)", "Plan: 3 to create, 0 to update, 0 to remove, 0 unchanged."} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run: no %q in\n%s", want, out)
		}
	}
	if s := stackState(t, cl); len(s) != 0 {
		t.Fatalf("a dry run created %v", s)
	}

	start := time.Now()
	out = c.mustCLI(1, "stack", "deploy", "-c", f1, "--detach=false", "shop")
	t.Logf("3 services converged %s after deploy", time.Since(start))
	if !strings.Contains(out, "Creating service shop_web") || !strings.Contains(out, "Stack shop: 3 created, 0 updated, 0 removed, 0 unchanged") {
		t.Fatalf("deploy said:\n%s", out)
	}
	// The published port answers, from web's tasks, with the file's environment.
	last := ""
	waitFor(t, 20*time.Second, "web healthy on its published port", func() bool {
		last = httpGet(t, "http://"+c.ip(1)+":29080/")
		return strings.Contains(last, "service=shop_web") && strings.Contains(last, "version=1")
	})
	t.Logf("web answers %q", last)

	// The stack's commands.
	var stacks []stackRow
	if err := json.Unmarshal([]byte(c.mustCLI(1, "stack", "ls", "--format", "json")), &stacks); err != nil || !slices.Equal(stacks, []stackRow{{Name: "shop", Services: 3}}) {
		t.Fatalf("stack ls: %v %+v", err, stacks)
	}
	var rows []serviceRow
	if err := json.Unmarshal([]byte(c.mustCLI(1, "stack", "services", "--format", "json", "shop")), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("stack services: %v %+v", err, rows)
	}
	for i, want := range []string{"shop_api", "shop_web", "shop_worker"} {
		if rows[i].Name != want || rows[i].Labels[api.LabelStackNamespace] != "shop" {
			t.Fatalf("stack services row %d: %+v", i, rows[i])
		}
	}
	if rows[0].Labels["tier"] != "back" || rows[1].Replicas != "2/2" {
		t.Fatalf("deploy labels or replicas: %+v", rows)
	}
	var ps []taskJSON
	if err := json.Unmarshal([]byte(c.mustCLI(1, "stack", "ps", "--format", "json", "shop")), &ps); err != nil || len(ps) != 4 {
		t.Fatalf("stack ps: %v %+v", err, ps)
	}
	if out := c.mustCLI(1, "stack", "ls"); !strings.Contains(out, "NAME") || !strings.Contains(out, "shop") {
		t.Fatalf("stack ls table:\n%s", out)
	}
	web, _ := cl.Service(context.Background(), "shop_web")
	if u := web.Spec.Update; u == nil || u.Order != api.OrderStartFirst || u.Parallelism != 1 || u.FailureAction != api.FailureRollback || web.Spec.Health == nil {
		t.Fatalf("web's spec: %+v %+v", web.Spec.Update, web.Spec.Health)
	}

	// The same file again changes nothing: no spec version moves, no task is replaced.
	before := stackState(t, cl)
	out = c.mustCLI(1, "stack", "deploy", "-c", f1, "shop")
	if !strings.Contains(out, "Stack shop: 0 created, 0 updated, 0 removed, 3 unchanged") || strings.Contains(out, "Updating") {
		t.Fatalf("redeploy said:\n%s", out)
	}
	if after := stackState(t, cl); !sameStates(before, after) {
		t.Fatalf("an unchanged redeploy changed the cluster:\n%v\n%v", before, after)
	}

	// A changed file (an override merged over the first): the dry run names
	// the one change and changes nothing.
	f2 := writeStack(t, dir, "v2.yml", "services:\n  web:\n    environment: {WHOAMI_VERSION: \"2\"}\n")
	out = c.mustCLI(1, "stack", "deploy", "--dry-run", "-c", f1, "-c", f2, "shop")
	t.Logf("dry run of the change:\n%s", out)
	for _, want := range []string{"~ service shop_web (update: rolling update, 1 at a time, start-first)", `~ env: ["WHOAMI_VERSION=1"] => ["WHOAMI_VERSION=2"]`,
		"  service shop_api (unchanged)", "Plan: 0 to create, 1 to update, 0 to remove, 2 unchanged."} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run of a change: no %q in\n%s", want, out)
		}
	}
	if after := stackState(t, cl); !sameStates(before, after) {
		t.Fatalf("a dry run changed the cluster")
	}
	// The deploy updates web alone, rolled out under its settings.
	out = c.mustCLI(1, "stack", "deploy", "-c", f1, "-c", f2, "--detach=false", "shop")
	if !strings.Contains(out, "Updating service shop_web") || strings.Count(out, "Updating service") != 1 {
		t.Fatalf("deploy of a change said:\n%s", out)
	}
	after := stackState(t, cl)
	for name, b := range before {
		a := after[name]
		if name == "shop_web" {
			if a.version != b.version+1 || slices.Equal(a.tasks, b.tasks) {
				t.Fatalf("web was not updated: %+v -> %+v", b, a)
			}
			continue
		}
		if !b.same(a) {
			t.Fatalf("%s changed though its part of the file did not: %+v -> %+v", name, b, a)
		}
	}
	if b := httpGet(t, "http://"+c.ip(1)+":29080/"); !strings.Contains(b, "version=2") {
		t.Fatalf("web after the update: %q", b)
	}
	web, _ = cl.Service(context.Background(), "shop_web")
	if web.UpdateStatus == nil || web.UpdateStatus.State != api.UpdateCompleted {
		t.Fatalf("web's update: %+v", web.UpdateStatus)
	}

	// worker leaves the file: kept (with a warning) until --prune.
	f3 := writeStack(t, dir, "v3.yml", strings.Split(file("2"), "  worker:")[0])
	_, errOut, err = c.cli(1, "stack", "deploy", "-c", f3, "shop")
	if err != nil || !strings.Contains(errOut, "service shop_worker is no longer in the compose files and keeps running: --prune removes it") {
		t.Fatalf("deploy without worker: %v %s", err, errOut)
	}
	if _, ok := stackState(t, cl)["shop_worker"]; !ok {
		t.Fatal("worker removed without --prune")
	}
	out = c.mustCLI(1, "stack", "deploy", "--dry-run", "--prune", "-c", f3, "shop")
	if !strings.Contains(out, "- service shop_worker (remove)") || !strings.Contains(out, "Plan: 0 to create, 0 to update, 1 to remove, 2 unchanged.") {
		t.Fatalf("dry run with prune:\n%s", out)
	}
	if _, ok := stackState(t, cl)["shop_worker"]; !ok {
		t.Fatal("a dry run with --prune removed worker")
	}
	before = stackState(t, cl)
	out = c.mustCLI(1, "stack", "deploy", "--prune", "-c", f3, "shop")
	if !strings.Contains(out, "Removing service shop_worker") {
		t.Fatalf("prune said:\n%s", out)
	}
	after = stackState(t, cl)
	if _, ok := after["shop_worker"]; ok || !before["shop_web"].same(after["shop_web"]) || !before["shop_api"].same(after["shop_api"]) {
		t.Fatalf("prune: %v -> %v", before, after)
	}

	// A service of another name outside the stack is never taken over.
	c.mustCLI(1, "service", "create", "--name", "shop_db", "--detach", "-p", "80", whoamiBin)
	withDB := writeStack(t, dir, "db.yml", file("2")+"  db:\n    image: "+whoamiBin+"\n")
	c.expectError(t, 1, "service shop_db exists and is not part of stack shop", "stack", "deploy", "-c", withDB, "shop")
	c.mustCLI(1, "service", "rm", "shop_db")

	t.Run("secret", func(t *testing.T) { stackSecret(t, c, cl, dir) })
	t.Run("job", func(t *testing.T) { stackJob(t, c, cl, dir) })

	// stack rm removes every service of the stack, and their tasks stop.
	out = c.mustCLI(1, "stack", "rm", "shop")
	if !strings.Contains(out, "Removing service shop_api") || !strings.Contains(out, "Removing service shop_web") {
		t.Fatalf("stack rm said:\n%s", out)
	}
	if s := stackState(t, cl); len(s) != 0 {
		t.Fatalf("after stack rm: %v", s)
	}
	if out := c.mustCLI(1, "stack", "ls", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("stack ls after rm: %s", out)
	}
	waitFor(t, 20*time.Second, "the published port closed", func() bool {
		_, err := httpClientShort().Get("http://" + c.ip(1) + ":29080/")
		return err != nil
	})
	if _, errOut, _ := c.cli(1, "stack", "rm", "shop"); !strings.Contains(errOut, "Nothing found in stack: shop") {
		t.Fatalf("rm of a stack that is gone: %q", errOut)
	}
}

func sameStates(a, b map[string]serviceState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !v.same(b[k]) {
			return false
		}
	}
	return true
}

// stackSecret: a stack whose service uses a secret from a file. The stack
// creates the secret as STACK_KEY, the service's task runs with it, an
// unchanged redeploy makes no new version, and stack rm removes the secret
// with the services.
func stackSecret(t *testing.T, c *cluster, cl *client.Client, dir string) {
	writeStack(t, dir, "token.txt", "s3cr3t\n")
	f := writeStack(t, dir, "secret.yml", `services:
  vault:
    image: `+whoamiBin+`
    ports: ["80"]
    secrets: [token]
secrets:
  token: {file: ./token.txt}
`)
	c.mustCLI(1, "stack", "deploy", "-c", f, "--detach=false", "vault")
	svc, err := cl.Service(context.Background(), "vault_vault")
	if err != nil || len(svc.Spec.Secrets) != 1 || svc.Spec.Secrets[0].Source != "vault_token" {
		t.Fatalf("vault's spec: %v %+v", err, svc.Spec.Secrets)
	}
	if out := c.mustCLI(1, "secret", "inspect", "vault_token"); strings.Contains(out, "s3cr3t") {
		t.Fatal("secret inspect shows the secret's value")
	}
	versions := c.mustCLI(1, "secret", "inspect", "vault_token")
	out := c.mustCLI(1, "stack", "deploy", "-c", f, "vault")
	if strings.Contains(out, "Updating") || c.mustCLI(1, "secret", "inspect", "vault_token") != versions {
		t.Fatalf("an unchanged redeploy changed the secret:\n%s", out)
	}
	c.mustCLI(1, "stack", "rm", "vault")
	if _, _, err := c.cli(1, "secret", "inspect", "vault_token"); err == nil {
		t.Fatal("stack rm left the stack's secret")
	}
}

func httpClientShort() *http.Client { return &http.Client{Timeout: time.Second} }

// stackJob: a stack's job service is waited for until its run completes, on the
// first deploy and on a redeploy that changes it (which starts a new run, not a
// rolling update), and then removed with its stack.
func stackJob(t *testing.T, c *cluster, cl *client.Client, dir string) {
	job := func(v string) string {
		return `services:
  once:
    image: /bin/sh
    command: ["-c", "exit 0"]
    environment: [RUN=` + v + `]
    deploy: {mode: replicated-job, replicas: 2}
`
	}
	for _, v := range []string{"1", "2"} {
		f := writeStack(t, dir, "job.yml", job(v))
		c.mustCLI(1, "stack", "deploy", "-c", f, "batch")
		svc, err := cl.Service(context.Background(), "batch_once")
		if err != nil || svc.Spec.Mode != "replicated-job" {
			t.Fatalf("run %s: %v %+v", v, err, svc.Spec.Mode)
		}
		var ps []taskJSON
		out := c.mustCLI(1, "service", "ps", "--format", "json", "batch_once")
		if err := json.Unmarshal([]byte(out), &ps); err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, x := range ps {
			if x.Current == "complete" {
				done++
			}
		}
		if done != 2 {
			t.Fatalf("run %s: deploy returned with %d of 2 completions:\n%s", v, done, out)
		}
	}
	c.mustCLI(1, "stack", "rm", "batch")
}
