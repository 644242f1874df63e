package docker

import (
	"context"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// Describe reports what docker info says, in the form nodes register it.
func TestDescribe(t *testing.T) {
	requireDocker(t)
	info, err := testCLI.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p, labels, err := Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p != (api.Platform{OS: info.OSType, Arch: info.Architecture}) || p.OS == "" || p.Arch == "" {
		t.Fatalf("platform %+v, docker info says %s/%s", p, info.OSType, info.Architecture)
	}
	if len(labels) != len(info.Labels) {
		t.Fatalf("labels %v, docker info has %v", labels, info.Labels)
	}
}
