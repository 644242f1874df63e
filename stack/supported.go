package stack

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/tree"
)

// What a stack honours of the compose specification. compose-go screens the
// merged model against an allowlist (loader.WithSupportedAttributes): every
// attribute outside it is reported, and becomes a warning naming it. An
// attribute the specification adds later is reported too until it is mapped
// here, so nothing is ever dropped in silence. Keys the schema does not know
// are not warnings: compose-go's validation refuses the file.

// supported are attribute paths honoured with everything below them.
var supported = []string{
	"name",
	"include", // the loader merges included files
	"services.*.image", "services.*.command", "services.*.entrypoint",
	"services.*.environment", "services.*.env_file", // the loader folds env_file into environment
	"services.*.labels", "services.*.label_file",
	"services.*.extends", "services.*.profiles", // the loader applies both
	"services.*.ports.[].target", "services.*.ports.[].published", "services.*.ports.[].protocol", "services.*.ports.[].mode",
	// expose only documents a port: every port of a task is reachable on the
	// cluster network, as on a Swarm overlay.
	"services.*.expose",
	"services.*.scale",
	"services.*.deploy.mode", "services.*.deploy.replicas", "services.*.deploy.labels", "services.*.deploy.endpoint_mode",
	"services.*.deploy.resources.limits.cpus", "services.*.deploy.resources.limits.memory", "services.*.deploy.resources.limits.pids",
	"services.*.deploy.resources.reservations.cpus", "services.*.deploy.resources.reservations.memory",
	"services.*.deploy.placement", "services.*.deploy.restart_policy",
	"services.*.deploy.update_config", "services.*.deploy.rollback_config",
	"services.*.healthcheck.test", "services.*.healthcheck.interval", "services.*.healthcheck.timeout",
	"services.*.healthcheck.start_period", "services.*.healthcheck.retries", "services.*.healthcheck.disable",
	"services.*.secrets", "services.*.configs",
	"services.*.volumes.[].type", "services.*.volumes.[].source", "services.*.volumes.[].target",
	"services.*.volumes.[].read_only", "services.*.volumes.[].tmpfs.size",
	"services.*.tmpfs",
	"services.*.hostname", "services.*.user", "services.*.working_dir",
	"services.*.stop_grace_period", "services.*.stop_signal",
	"services.*.cap_add", "services.*.cap_drop", "services.*.sysctls", "services.*.ulimits",
	"services.*.init", "services.*.read_only", "services.*.dns_opt", "services.*.pids_limit",
	"secrets.*.name", "secrets.*.file", "secrets.*.environment", "secrets.*.external", "secrets.*.labels",
	"configs.*.name", "configs.*.file", "configs.*.environment", "configs.*.content", "configs.*.external", "configs.*.labels",
	"volumes.*.name", "volumes.*.external",
}

// why says, for attributes users often bring, what to do instead.
var why = []struct {
	pattern string
	reason  string
}{
	{"services.*.build", "images are not built: build and load or push the image, and name it in image"},
	{"services.*.depends_on", "services start in any order; a service that needs another must wait for it (its health check keeps it out of DNS until then)"},
	{"services.*.networks", "every service is on the cluster network and reaches the others of its stack by their short names"},
	{"networks", "every service is on the cluster network and reaches the others of its stack by their short names"},
	{"services.*.restart", "use deploy.restart_policy"},
	{"services.*.container_name", "tasks are named by service and slot"},
	{"services.*.links", "services of a stack reach each other by their short names"},
	{"services.*.mem_limit", "use deploy.resources.limits.memory"},
	{"services.*.mem_reservation", "use deploy.resources.reservations.memory"},
	{"services.*.cpus", "use deploy.resources.limits.cpus"},
	{"services.*.healthcheck.start_interval", "checks run at interval from the start"},
	{"services.*.ports.[].host_ip", "published ports listen on every node's address"},
	{"volumes.*.driver", "volumes are local volumes of the node a task runs on"},
	{"volumes.*.driver_opts", "volumes are local volumes of the node a task runs on"},
}

// supportedPaths is the allowlist compose-go screens with: every path of the
// specification that lies under a supported one.
func supportedPaths() []tree.Path {
	var out []tree.Path
	for _, p := range schema.AttributePaths() {
		s := string(p)
		for _, root := range supported {
			if s == root || strings.HasPrefix(s, root+".") {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// unsupportedWarnings words compose-go's findings, one line each.
func unsupportedWarnings(found []loader.UnsupportedAttribute) []string {
	var out []string
	for _, f := range found {
		if implied(f) {
			continue
		}
		w := fmt.Sprintf("%s is not supported and is ignored", f.Path)
		if strings.Contains(string(f.Path), "[]") {
			// One item of a list: say which by what it holds.
			w = fmt.Sprintf("%s (%s) is not supported and is ignored", f.Path, compact(f.Value))
		}
		for _, r := range why {
			if f.Path.Matches(tree.Path(r.pattern)) {
				w += ": " + r.reason
				break
			}
		}
		out = append(out, w)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// implied says whether a finding is only what compose's short syntax fills in
// (or the default network), not something the file asks for.
func implied(f loader.UnsupportedAttribute) bool {
	if f.Path.Matches("services.*.networks") {
		return onlyDefaultNetwork(f.Value)
	}
	m, ok := f.Value.(map[string]any)
	if !ok {
		return false
	}
	if f.Path.Matches("services.*.volumes.[].bind") {
		// "./data:/data" reads as bind.create_host_path: true. Like
		// Swarm, a task's bind source must exist on its node.
		_, only := m["create_host_path"]
		return len(m) == 0 || len(m) == 1 && only
	}
	return len(m) == 0 // "db:/var/db" reads as volume: {}
}

// compact is a value of the model on one short line.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

func onlyDefaultNetwork(v any) bool {
	switch n := v.(type) {
	case []any:
		return len(n) == 1 && n[0] == "default"
	case map[string]any:
		_, ok := n["default"]
		return len(n) == 1 && ok && n["default"] == nil
	}
	return false
}
