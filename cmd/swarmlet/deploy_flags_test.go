package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
)

func TestUpdateKV(t *testing.T) {
	got, err := updateKV([]string{"A=1", "B=2", "C=3"}, []string{"B=20", "D=4"}, []string{"C"}, "--env-add")
	if err != nil || !slices.Equal(got, []string{"A=1", "B=20", "D=4"}) {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := updateKV(nil, []string{"novalue"}, nil, "--env-add"); err == nil || !strings.Contains(err.Error(), "--env-add") {
		t.Fatalf("bad entry: %v", err)
	}
}

func TestRemovePort(t *testing.T) {
	ports := []api.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080}, {Protocol: "udp", TargetPort: 53}}
	if got, err := removePort(ports, "80"); err != nil || len(got) != 1 || got[0].TargetPort != 53 {
		t.Fatalf("remove 80: %v %v", got, err)
	}
	if got, err := removePort(ports, "53/udp"); err != nil || len(got) != 1 || got[0].TargetPort != 80 {
		t.Fatalf("remove 53/udp: %v %v", got, err)
	}
	if _, err := removePort(ports, "9090:80"); err == nil || !strings.Contains(err.Error(), "no such port") {
		t.Fatalf("remove a port not published: %v", err)
	}
}

// Only the flags given change the spec; a given --update-* starts from Docker's
// defaults or the spec's own settings.
func TestDeployFlagsApply(t *testing.T) {
	parse := func(args ...string) (*cobra.Command, *deployFlags) {
		var d deployFlags
		c := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
		d.register(c.Flags())
		if err := c.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		return c, &d
	}
	c, d := parse()
	var spec api.ServiceSpec
	if err := d.apply(c.Flags(), &spec); err != nil || spec.Update != nil || spec.Health != nil || spec.StopGracePeriod != nil {
		t.Fatalf("no flags changed the spec: %+v %v", spec, err)
	}
	c, d = parse("--update-parallelism", "3", "--update-order", "start-first", "--rollback-monitor", "2s",
		"--health-http", "/h", "--health-interval", "250ms", "--stop-grace-period", "3s", "--stop-signal", "SIGINT")
	spec = api.ServiceSpec{Update: &api.UpdateConfig{Parallelism: 1, Delay: time.Second, FailureAction: api.FailureRollback, Order: api.OrderStopFirst}}
	if err := d.apply(c.Flags(), &spec); err != nil {
		t.Fatal(err)
	}
	if u := spec.Update; u.Parallelism != 3 || u.Order != api.OrderStartFirst || u.Delay != time.Second || u.FailureAction != api.FailureRollback {
		t.Fatalf("update config %+v: want the flags over the spec's own", *u)
	}
	if r := spec.Rollback; r == nil || r.Monitor != 2*time.Second || r.Parallelism != 1 {
		t.Fatalf("rollback config %+v: want the flag over Docker's defaults", r)
	}
	if h := spec.Health; h == nil || h.HTTPPath != "/h" || h.Interval != 250*time.Millisecond {
		t.Fatalf("health %+v", h)
	}
	if spec.StopGrace() != 3*time.Second || spec.StopSignal != "SIGINT" {
		t.Fatalf("stop %v %q", spec.StopGrace(), spec.StopSignal)
	}
	c, d = parse("--no-healthcheck", "--health-cmd", "true")
	if err := d.apply(c.Flags(), &spec); err == nil || !strings.Contains(err.Error(), "conflicts") {
		t.Fatalf("--no-healthcheck with --health-cmd: %v", err)
	}
}
