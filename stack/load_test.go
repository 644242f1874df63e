package stack

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// write puts files (name -> content) in a new directory and returns its path.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, dir string, env []string, files ...string) (*Stack, error) {
	t.Helper()
	if len(files) == 0 {
		files = []string{"compose.yml"}
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(dir, f))
	}
	return Load(context.Background(), Options{Name: "shop", Files: paths, Env: env})
}

func mustLoad(t *testing.T, yml string, extra ...string) *Stack {
	t.Helper()
	files := map[string]string{"compose.yml": yml}
	for i := 0; i+1 < len(extra); i += 2 {
		files[extra[i]] = extra[i+1]
	}
	st, err := load(t, write(t, files), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func service(t *testing.T, st *Stack, name string) api.ServiceSpec {
	t.Helper()
	for _, s := range st.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %s in %d services", name, len(st.Services))
	return api.ServiceSpec{}
}

func dur(d time.Duration) *time.Duration { return &d }

// TestLoadMapping: each compose key a stack honours, and where it lands in the spec.
func TestLoadMapping(t *testing.T) {
	for _, tc := range []struct {
		name  string
		web   string            // the body of services.web (indented 4)
		top   string            // top-level keys after services
		files map[string]string // more files beside compose.yml
		check func(t *testing.T, s api.ServiceSpec)
	}{
		{name: "image, command, name and labels of the stack", web: `image: whoami:1
    command: ["serve", "--port", "80"]`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Name != "shop_web" || s.Image != "whoami:1" || !slices.Equal(s.Command, []string{"serve", "--port", "80"}) {
					t.Fatalf("%s %s %q", s.Name, s.Image, s.Command)
				}
				if s.Labels[api.LabelStackNamespace] != "shop" || s.Labels[api.LabelStackImage] != "whoami:1" {
					t.Fatalf("labels %v", s.Labels)
				}
				if s.Mode != api.ModeReplicated || s.Replicas != 1 || s.Container != nil {
					t.Fatalf("defaults: %s %d %+v", s.Mode, s.Replicas, s.Container)
				}
			}},
		{name: "shell form command", web: `image: x
    command: serve --port 80`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if !slices.Equal(s.Command, []string{"serve", "--port", "80"}) {
					t.Fatalf("%q", s.Command)
				}
			}},
		{name: "entrypoint", web: `image: x
    entrypoint: ["/bin/tini", "--"]`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Container == nil || !slices.Equal(s.Container.Entrypoint, []string{"/bin/tini", "--"}) {
					t.Fatalf("%+v", s.Container)
				}
			}},
		{name: "environment and env_file, sorted", web: `image: x
    env_file: [web.env]
    environment:
      B: "2"
      A: "1"`, files: map[string]string{"web.env": "C=3\nA=0\n"},
			check: func(t *testing.T, s api.ServiceSpec) {
				// environment wins over env_file, as compose says.
				if !slices.Equal(s.Env, []string{"A=1", "B=2", "C=3"}) {
					t.Fatalf("%q", s.Env)
				}
			}},
		{name: "environment as a list", web: `image: x
    environment: ["A=1", "B=x=y"]`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if !slices.Equal(s.Env, []string{"A=1", "B=x=y"}) {
					t.Fatalf("%q", s.Env)
				}
			}},
		{name: "ports: short, long, udp, host mode", web: `image: x
    ports:
      - "8080:80"
      - "53/udp"
      - target: 443
        published: "8443"
        mode: host`,
			check: func(t *testing.T, s api.ServiceSpec) {
				want := []api.PortConfig{
					{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: api.PublishIngress},
					{Protocol: "udp", TargetPort: 53, PublishMode: api.PublishIngress},
					{Protocol: "tcp", TargetPort: 443, PublishedPort: 8443, PublishMode: api.PublishHost},
				}
				if !reflect.DeepEqual(s.Ports, want) {
					t.Fatalf("%+v", s.Ports)
				}
			}},
		{name: "replicas", web: `image: x
    deploy: {replicas: 3}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Mode != api.ModeReplicated || s.Replicas != 3 {
					t.Fatalf("%s %d", s.Mode, s.Replicas)
				}
			}},
		{name: "replicas 0", web: `image: x
    deploy: {replicas: 0}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Replicas != 0 {
					t.Fatalf("%d", s.Replicas)
				}
			}},
		{name: "scale", web: `image: x
    scale: 2`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Replicas != 2 {
					t.Fatalf("%d", s.Replicas)
				}
			}},
		{name: "global", web: `image: x
    deploy: {mode: global}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Mode != api.ModeGlobal || s.Replicas != 0 {
					t.Fatalf("%s %d", s.Mode, s.Replicas)
				}
			}},
		{name: "endpoint mode", web: `image: x
    deploy: {endpoint_mode: dnsrr}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.EndpointMode != api.EndpointDNSRR {
					t.Fatal(s.EndpointMode)
				}
			}},
		{name: "deploy labels are the service's, labels the containers'", web: `image: x
    labels: {tier: front}
    deploy:
      labels: {owner: team-a}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Labels["owner"] != "team-a" || s.Labels["tier"] != "" {
					t.Fatalf("service labels %v", s.Labels)
				}
				if s.Container == nil || !reflect.DeepEqual(s.Container.ContainerLabels, map[string]string{"tier": "front"}) {
					t.Fatalf("container %+v", s.Container)
				}
			}},
		{name: "resources", web: `image: x
    deploy:
      resources:
        limits: {cpus: "0.1", memory: 512M, pids: 100}
        reservations: {cpus: "1.5", memory: 64m}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if s.Limits != (api.Resources{NanoCPUs: 1e8, MemoryBytes: 512 << 20}) || s.Reservations != (api.Resources{NanoCPUs: 15e8, MemoryBytes: 64 << 20}) {
					t.Fatalf("%+v %+v", s.Limits, s.Reservations)
				}
				if s.Container == nil || s.Container.PidsLimit != 100 {
					t.Fatalf("%+v", s.Container)
				}
			}},
		{name: "placement", web: `image: x
    deploy:
      placement:
        constraints: ["node.role == manager", "node.labels.zone!=b"]
        preferences: [{spread: node.labels.zone}, {spread: node.labels.rack}]
        max_replicas_per_node: 2`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if !slices.Equal(s.Constraints, []string{"node.role==manager", "node.labels.zone!=b"}) {
					t.Fatalf("%q", s.Constraints)
				}
				if !reflect.DeepEqual(s.PlacementPrefs, []api.PlacementPref{{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"}}) || s.MaxReplicasPerNode != 2 {
					t.Fatalf("%+v %d", s.PlacementPrefs, s.MaxReplicasPerNode)
				}
			}},
		{name: "restart policy", web: `image: x
    deploy:
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				want := api.RestartPolicy{Condition: api.RestartOnFailure, Delay: dur(5 * time.Second), MaxAttempts: 3, Window: 2 * time.Minute}
				if !reflect.DeepEqual(s.RestartPolicy, want) {
					t.Fatalf("%+v", s.RestartPolicy)
				}
			}},
		{name: "update and rollback settings over docker's defaults", web: `image: x
    deploy:
      update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 30s, max_failure_ratio: 0.3}
      rollback_config: {parallelism: 0}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				up := api.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, Order: api.OrderStartFirst, FailureAction: api.FailureRollback, Monitor: 30 * time.Second, MaxFailureRatio: 0.3}
				rb := api.DefaultUpdateConfig()
				rb.Parallelism = 0
				if *s.Update != up || *s.Rollback != rb {
					t.Fatalf("%+v %+v", *s.Update, *s.Rollback)
				}
			}},
		{name: "no update settings: docker's defaults", web: `image: x`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if *s.Update != api.DefaultUpdateConfig() || *s.Rollback != api.DefaultUpdateConfig() || s.StopGrace() != api.DefaultStopGracePeriod {
					t.Fatalf("%+v %+v %s", *s.Update, *s.Rollback, s.StopGrace())
				}
			}},
		{name: "healthcheck, shell form", web: `image: x
    healthcheck: {test: "wget -q localhost", interval: 5s, timeout: 2s, start_period: 1s, retries: 4}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				want := api.HealthCheck{Test: []string{"CMD-SHELL", "wget -q localhost"}, Interval: 5 * time.Second, Timeout: 2 * time.Second, StartPeriod: time.Second, Retries: 4}
				if !reflect.DeepEqual(*s.Health, want) {
					t.Fatalf("%+v", *s.Health)
				}
			}},
		{name: "healthcheck, exec form", web: `image: x
    healthcheck: {test: ["CMD", "/whoami", "healthcheck"]}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if !slices.Equal(s.Health.Test, []string{"CMD", "/whoami", "healthcheck"}) {
					t.Fatalf("%+v", *s.Health)
				}
			}},
		{name: "healthcheck disabled", web: `image: x
    healthcheck: {disable: true}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if !reflect.DeepEqual(*s.Health, api.HealthCheck{Disable: true}) {
					t.Fatalf("%+v", *s.Health)
				}
			}},
		{name: "healthcheck NONE", web: `image: x
    healthcheck: {test: ["NONE"]}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if !s.Health.Disable {
					t.Fatalf("%+v", *s.Health)
				}
			}},
		{name: "secrets and configs", web: `image: x
    secrets:
      - token
      - {source: key, target: tls.key, uid: "100", gid: "101", mode: 0400}
    configs:
      - app
      - {source: app, target: /etc/app.conf, mode: 0440}`,
			top: `secrets:
  token: {file: ./token.txt}
  key: {external: true, name: prod-key}
configs:
  app: {content: "x=1"}`, files: map[string]string{"token.txt": "t0ken"},
			check: func(t *testing.T, s api.ServiceSpec) {
				want := []api.SecretRef{{Source: "shop_token", Target: "/run/secrets/token", Mode: api.DefaultSecretMode}, {Source: "prod-key", Target: "tls.key", UID: "100", GID: "101", Mode: 0o400}}
				if !reflect.DeepEqual(s.Secrets, want) {
					t.Fatalf("secrets %+v", s.Secrets)
				}
				wantc := []api.SecretRef{{Source: "shop_app", Target: "/app", Mode: api.DefaultSecretMode}, {Source: "shop_app", Target: "/etc/app.conf", Mode: 0o440}}
				if !reflect.DeepEqual(s.Configs, wantc) {
					t.Fatalf("configs %+v", s.Configs)
				}
			}},
		{name: "volumes: named, bind, tmpfs, and the tmpfs key", web: `image: x
    volumes:
      - data:/var/lib/data
      - ./conf:/etc/conf:ro
      - {type: tmpfs, target: /scratch, tmpfs: {size: 64m}}
      - {type: volume, source: ext, target: /ext, read_only: true}
    tmpfs: ["/run", "/tmp:size=1m"]`,
			top: `volumes:
  data: {}
  ext: {external: true}`,
			check: func(t *testing.T, s api.ServiceSpec) {
				if len(s.Mounts) != 6 {
					t.Fatalf("%+v", s.Mounts)
				}
				bind := s.Mounts[1]
				if bind.Type != api.MountBind || !filepath.IsAbs(bind.Source) || filepath.Base(bind.Source) != "conf" || !bind.ReadOnly || bind.Target != "/etc/conf" {
					t.Fatalf("bind %+v", bind)
				}
				want := []api.Mount{{Type: api.MountVolume, Source: "shop_data", Target: "/var/lib/data"}, bind,
					{Type: api.MountTmpfs, Target: "/scratch", TmpfsSize: 64 << 20}, {Type: api.MountVolume, Source: "ext", Target: "/ext", ReadOnly: true},
					{Type: api.MountTmpfs, Target: "/run"}, {Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 1 << 20}}
				if !reflect.DeepEqual(s.Mounts, want) {
					t.Fatalf("%+v", s.Mounts)
				}
			}},
		{name: "container options", web: `image: x
    hostname: web-host
    user: "1000:1000"
    working_dir: /srv
    stop_grace_period: 1m30s
    stop_signal: SIGQUIT
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: "1024"}
    ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}
    init: true
    read_only: true
    dns_opt: [ndots:1]
    pids_limit: 50`,
			check: func(t *testing.T, s api.ServiceSpec) {
				want := api.ContainerOptions{Hostname: "web-host", User: "1000:1000", Workdir: "/srv", CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"ALL"},
					Sysctls: map[string]string{"net.core.somaxconn": "1024"}, Ulimits: []api.Ulimit{{Name: "nofile", Soft: 20000, Hard: 40000}, {Name: "nproc", Soft: 65535, Hard: 65535}},
					Init: true, ReadOnly: true, DNSOptions: []string{"ndots:1"}, PidsLimit: 50}
				if !reflect.DeepEqual(*s.Container, want) {
					t.Fatalf("%+v", *s.Container)
				}
				if s.StopGrace() != 90*time.Second || s.StopSignal != "SIGQUIT" {
					t.Fatalf("%s %s", s.StopGrace(), s.StopSignal)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"compose.yml": "services:\n  web:\n    " + tc.web + "\n" + tc.top + "\n"}
			for k, v := range tc.files {
				files[k] = v
			}
			st, err := load(t, write(t, files), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Warnings) > 0 {
				t.Errorf("warnings: %q", st.Warnings)
			}
			tc.check(t, service(t, st, "shop_web"))
		})
	}
}

// TestLoadJobModes: the job modes map onto the spec's modes (their behaviour,
// and their validation, are the jobs work's: this checks the mapping only).
func TestLoadJobModes(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		want     api.ServiceMode
		replicas uint64
	}{{"replicated-job", api.ModeReplicatedJob, 4}, {"global-job", api.ModeGlobalJob, 0}} {
		p := projectOf(t, "services:\n  job:\n    image: x\n    deploy: {mode: "+tc.mode+", replicas: 4}\n")
		spec, _, err := serviceSpec(p, p.Services["job"])
		if tc.mode == "global-job" {
			// Docker refuses replicas with a global job too; the spec says none.
			spec.Replicas = 0
		}
		if err != nil || spec.Mode != tc.want || spec.Replicas != tc.replicas {
			t.Errorf("%s: %v %s %d", tc.mode, err, spec.Mode, spec.Replicas)
		}
	}
}

// TestLoadWarnings: what a stack does not do is named, with what to do instead;
// what compose's short syntax implies is not.
func TestLoadWarnings(t *testing.T) {
	st := mustLoad(t, `services:
  web:
    image: x
    build: .
    depends_on: [db]
    restart: always
    container_name: web1
    networks: [back]
    ports: [{target: 80, published: "80", host_ip: 127.0.0.1}]
    healthcheck: {test: "true", start_interval: 1s}
    privileged: true
    environment: [UNSET_HERE]
  db:
    image: y
    networks: [default]
    volumes: ["./d:/d", "data:/v"]
networks:
  back: {}
volumes:
  data: {driver: nfs}
`)
	want := []string{
		"networks is not supported and is ignored: every service is on the cluster network",
		"services.web.build is not supported and is ignored: images are not built",
		"services.web.container_name is not supported",
		"services.web.depends_on is not supported and is ignored: services start in any order",
		"services.web.healthcheck.start_interval is not supported",
		"services.web.networks is not supported and is ignored: every service is on the cluster network",
		`services.web.ports.[].host_ip ("127.0.0.1") is not supported and is ignored: published ports listen on every node's address`,
		"services.web.privileged is not supported and is ignored",
		"services.web.restart is not supported and is ignored: use deploy.restart_policy",
		"volumes.data.driver is not supported and is ignored: volumes are local volumes",
		"services.web.environment.UNSET_HERE has no value",
	}
	if len(st.Warnings) != len(want) {
		t.Errorf("%d warnings, want %d:\n%s", len(st.Warnings), len(want), strings.Join(st.Warnings, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(st.Warnings, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no warning %q in:\n%s", w, strings.Join(st.Warnings, "\n"))
		}
	}
	for _, w := range st.Warnings {
		if strings.Contains(w, "services.db") {
			t.Errorf("the default network and short volume syntax are not warnings: %q", w)
		}
	}
	// The services are still deployed, without what was ignored.
	if s := service(t, st, "shop_web"); s.Image != "x" || len(s.Env) != 0 {
		t.Fatalf("%+v", s)
	}
}

// TestLoadInterpolation: compose's interpolation, from the given environment
// and a .env file beside the first file (the environment wins).
func TestLoadInterpolation(t *testing.T) {
	dir := write(t, map[string]string{
		"compose.yml": `services:
  web:
    image: "whoami:${TAG:-latest}"
    environment:
      FROM_ENV: "${FROM_ENV}"
      FROM_DOTENV: "${DOTTED}"
      DEFAULTED: "${NOPE:-fallback}"
      ESCAPED: "$${NOT_A_VAR}"
    deploy: {replicas: "${N}"}
`,
		".env": "DOTTED=yes\nTAG=from-dotenv\n",
	})
	st, err := load(t, dir, []string{"TAG=7", "FROM_ENV=hello", "N=3"})
	if err != nil {
		t.Fatal(err)
	}
	s := service(t, st, "shop_web")
	if s.Image != "whoami:7" || s.Replicas != 3 {
		t.Fatalf("%s %d", s.Image, s.Replicas)
	}
	if want := []string{"DEFAULTED=fallback", "ESCAPED=${NOT_A_VAR}", "FROM_DOTENV=yes", "FROM_ENV=hello"}; !slices.Equal(s.Env, want) {
		t.Fatalf("%q", s.Env)
	}

	// An unset variable is blank, and said so.
	st, err = load(t, write(t, map[string]string{"compose.yml": "services:\n  web:\n    image: \"x${UNSET_VAR}\"\n"}), nil)
	if err != nil || service(t, st, "shop_web").Image != "x" || !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, `"UNSET_VAR" variable is not set`) }) {
		t.Fatalf("%v %+v", err, st)
	}
	// A required one refuses the file.
	_, err = load(t, write(t, map[string]string{"compose.yml": "services:\n  web:\n    image: \"x${REQ:?set REQ to the tag}\"\n"}), nil)
	if err == nil || !strings.Contains(err.Error(), "set REQ to the tag") {
		t.Fatalf("required variable: %v", err)
	}
}

// TestLoadMerge: several files merge as compose merges them; extends and
// profiles are the loader's.
func TestLoadMerge(t *testing.T) {
	dir := write(t, map[string]string{
		"compose.yml": `services:
  web:
    extends: {file: base.yml, service: base}
    image: whoami:1
    environment: {A: "1", B: "1"}
    ports: ["8080:80"]
  debug:
    image: tools
    profiles: [debug]
`,
		"base.yml": `services:
  base:
    image: base
    user: "10"
    deploy: {replicas: 2, update_config: {parallelism: 3}}
`,
		"prod.yml": `services:
  web:
    image: whoami:2
    environment: {B: "2", C: "3"}
    deploy: {replicas: 5}
  worker:
    image: worker
`,
	})
	st, err := load(t, dir, nil, "compose.yml", "prod.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, s := range st.Services {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"shop_web", "shop_worker"}) {
		t.Fatalf("services %q (debug is in a profile not enabled)", names)
	}
	web := service(t, st, "shop_web")
	if web.Image != "whoami:2" || web.Replicas != 5 || web.Update.Parallelism != 3 || web.Container == nil || web.Container.User != "10" {
		t.Fatalf("%+v", web)
	}
	if !slices.Equal(web.Env, []string{"A=1", "B=2", "C=3"}) || len(web.Ports) != 1 {
		t.Fatalf("%q %+v", web.Env, web.Ports)
	}
	st, err = Load(context.Background(), Options{Name: "shop", Files: []string{filepath.Join(dir, "compose.yml")}, Profiles: []string{"debug"}})
	if err != nil || len(st.Services) != 2 || st.Services[0].Name != "shop_debug" {
		t.Fatalf("with the debug profile: %v %+v", err, st)
	}
	st, err = Load(context.Background(), Options{Name: "shop", Files: []string{filepath.Join(dir, "compose.yml")}, Env: []string{"COMPOSE_PROFILES=debug"}})
	if err != nil || len(st.Services) != 2 {
		t.Fatalf("with COMPOSE_PROFILES=debug: %v %+v", err, st)
	}
}

// TestLoadObjects: secrets and configs the services use, with their data;
// those nobody uses are not loaded (a missing file of an unused secret does
// not stop a deploy).
func TestLoadObjects(t *testing.T) {
	dir := write(t, map[string]string{
		"compose.yml": `services:
  web:
    image: x
    secrets: [token, pass, ext]
    configs: [app]
secrets:
  token: {file: ./token.txt, labels: {k: v}}
  pass: {environment: DB_PASS, name: db-password}
  ext: {external: true}
  unused: {file: ./missing.txt}
configs:
  app: {content: "x=1"}
`,
		"token.txt": "t0ken\n",
	})
	st, err := load(t, dir, []string{"DB_PASS=hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string]string{api.LabelStackNamespace: "shop"}
	want := []Object{
		{Key: "pass", Name: "db-password", Data: []byte("hunter2"), From: "environment DB_PASS", Labels: ns},
		{Key: "ext", Name: "ext", External: true},
		{Key: "token", Name: "shop_token", Data: []byte("t0ken\n"), From: "file " + filepath.Join(dir, "token.txt"), Labels: map[string]string{api.LabelStackNamespace: "shop", "k": "v"}},
	}
	if !reflect.DeepEqual(st.Secrets, want) {
		t.Fatalf("secrets:\n%+v\nwant\n%+v", st.Secrets, want)
	}
	if wantc := []Object{{Key: "app", Name: "shop_app", Data: []byte("x=1"), From: "content", Labels: ns}}; !reflect.DeepEqual(st.Configs, wantc) {
		t.Fatalf("configs %+v", st.Configs)
	}
	if s := service(t, st, "shop_web"); len(s.Secrets) != 3 || s.Secrets[1].Source != "db-password" {
		t.Fatalf("%+v", s.Secrets)
	}
}

// TestLoadErrors: bad input is one clear error, naming the file, service or key.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack string
		files map[string]string
		want  string
	}{
		{"unknown key", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    imagez: y\n"}, "unknown key services.web.imagez"},
		{"unknown deploy key", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    deploy: {replicaz: 2}\n"}, "unknown key services.web.deploy.replicaz"},
		{"not YAML", "shop", map[string]string{"compose.yml": "services: [\n"}, "compose file"},
		{"not a compose file", "shop", map[string]string{"compose.yml": "hello: world\n"}, "unknown key hello"},
		{"missing file", "shop", map[string]string{}, "no such file"},
		{"bad stack name", "Shop_1", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n"}, `invalid stack name "Shop_1"`},
		{"service name not a DNS label", "shop", map[string]string{"compose.yml": "services:\n  Web_1:\n    image: x\n"}, `service Web_1: invalid name "Web_1"`},
		{"name too long", strings.Repeat("s", 40), map[string]string{"compose.yml": "services:\n  " + strings.Repeat("w", 30) + ":\n    image: x\n"}, "invalid service name"},
		{"no image", "shop", map[string]string{"compose.yml": "services:\n  web:\n    build: .\n"}, "service web: no image"},
		{"secret not defined", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    secrets: [nope]\n"}, "nope"},
		{"secret file missing", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {file: ./gone.txt}\n"}, "secrets.s: open"},
		{"secret environment unset", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {environment: NOT_SET_ANYWHERE}\n"}, "environment variable NOT_SET_ANYWHERE is not set"},
		{"bad mode", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    deploy: {mode: daemon}\n"}, `deploy.mode "daemon"`},
		{"published range", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    ports: [{target: 80, published: \"8000-8001\"}]\n"}, "no ranges"},
		{"bad restart condition", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    deploy: {restart_policy: {condition: sometimes}}\n"}, `service web: invalid restart condition "sometimes"`},
		{"bad update order", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    deploy: {update_config: {order: sideways}}\n"}, "order"},
		{"bad constraint", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    deploy: {placement: {constraints: [\"node.colour==red\"]}}\n"}, "invalid constraint"},
		{"bad secret name", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {name: \"-bad\", environment: HOME}\n"}, `invalid secret name "-bad"`},
		{"bad volume reference", "shop", map[string]string{"compose.yml": "services:\n  web:\n    image: x\n    volumes: [{type: volume, source: nope, target: /x}]\n"}, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, tc.files)
			_, err := Load(context.Background(), Options{Name: tc.stack, Files: []string{filepath.Join(dir, "compose.yml")}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one line with %q, got %v", tc.want, err)
			}
		})
	}
	if _, err := Load(context.Background(), Options{Name: "shop"}); err == nil {
		t.Fatal("no files: no error")
	}
}
