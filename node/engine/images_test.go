package engine

import (
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func TestRunImage(t *testing.T) {
	const d = "sha256:aaaa000000000000000000000000000000000000000000000000000000000000"
	const id = "sha256:bbbb000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct {
		spec api.ServiceSpec
		want string
	}{
		{api.ServiceSpec{Image: "app:dev"}, "app:dev"},
		{api.ServiceSpec{Image: "127.67.0.1:5000/a/b:v1", ImageDigest: d}, "127.67.0.1:5000/a/b@" + d},
		{api.ServiceSpec{Image: "127.67.0.1:5000/a/b", ImageDigest: d}, "127.67.0.1:5000/a/b@" + d},
		{api.ServiceSpec{Image: "r:5000/a:v1@" + d, ImageDigest: d}, "r:5000/a@" + d},
		{api.ServiceSpec{Image: "127.67.0.1:5000/a/b:v1", ImageDigest: d, ImageID: id}, id},
		{api.ServiceSpec{Image: "app:dev", ImageID: id}, id},
	} {
		if got := RunImage(tc.spec); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.spec, got, tc.want)
		}
	}
}
