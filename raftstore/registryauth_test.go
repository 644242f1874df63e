package raftstore

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// Registry credentials: stored with create, kept by an update that sends none,
// replaced by one that does, restored from a snapshot, removed with the service,
// and never part of what a service read returns.
func TestRegistryAuth(t *testing.T) {
	s := NewState()
	applyAll(t, s, []Command{
		&ClusterInit{ClusterID: "c1", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}, At: t0},
		&ServiceCreate{ID: "s1", Spec: spec("web", 1), At: t0, RegistryAuth: "cred-one"},
		&ServiceCreate{ID: "s2", Spec: spec("api", 1), At: t0},
	})
	steps := []struct {
		name string
		cmd  Command
		want map[string]string // service ID -> stored auth
	}{
		{"create stores", nil, map[string]string{"s1": "cred-one", "s2": ""}},
		{"update without keeps", &ServiceUpdate{Name: "web", Spec: spec("web", 2), At: t0}, map[string]string{"s1": "cred-one"}},
		{"update with replaces", &ServiceUpdate{Name: "web", Spec: spec("web", 2), At: t0, RegistryAuth: "cred-two"}, map[string]string{"s1": "cred-two"}},
		{"update adds", &ServiceUpdate{Name: "api", Spec: spec("api", 2), At: t0, RegistryAuth: "cred-api"}, map[string]string{"s2": "cred-api"}},
		{"remove deletes", &ServiceRemove{Name: "api", At: t0}, map[string]string{"s1": "cred-two", "s2": ""}},
	}
	for i, st := range steps {
		if st.cmd != nil {
			if _, err := s.Apply(uint64(100+i), st.cmd); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		for id, want := range st.want {
			if got := s.Snapshot().RegistryAuth(id); got != want {
				t.Fatalf("%s: service %s auth %q, want %q", st.name, id, got, want)
			}
		}
	}
	for _, svc := range s.Snapshot().Services() {
		b, _ := json.Marshal(svc)
		if strings.Contains(string(b), "cred-") {
			t.Fatalf("a service read shows credentials: %s", b)
		}
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot().RegistryAuth("s1"); got != "cred-two" {
		t.Fatalf("restored auth %q", got)
	}
}
