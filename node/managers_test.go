package node

import (
	"log/slog"
	"os"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// The first manager's identity knows only itself; the session teaches it the
// others, so a restart finds their gossip. Nothing is written when nothing changed.
func TestRememberManagers(t *testing.T) {
	dir := t.TempDir()
	d := &Daemon{cfg: Config{DataDir: dir}, log: slog.New(slog.DiscardHandler),
		id: &identity{NodeID: "m1", Role: api.RoleManager, Managers: []api.Node{{ID: "m1", Addr: "127.0.0.1", GossipPort: 4242}}}}
	as := api.Assignments{Nodes: []api.Node{
		{ID: "w1", Addr: "127.0.0.9", Role: api.RoleWorker, GossipPort: 4242},
		{ID: "m2", Addr: "127.0.0.2", Role: api.RoleManager, GossipPort: 4242, APIPort: 4240},
		{ID: "m1", Addr: "127.0.0.1", Role: api.RoleManager, GossipPort: 4242, APIPort: 4240, Labels: map[string]string{"a": "b"}},
	}}
	d.rememberManagers(as)
	got, err := loadIdentity(dir)
	if err != nil || got == nil {
		t.Fatalf("identity: %v", err)
	}
	if len(got.Managers) != 2 || got.Managers[0].ID != "m1" || got.Managers[1].ID != "m2" || got.Managers[1].Addr != "127.0.0.2" {
		t.Fatalf("managers %+v", got.Managers)
	}
	if err := os.Remove(identityPath(dir)); err != nil {
		t.Fatal(err)
	}
	d.rememberManagers(as) // the same list: no write
	if again, _ := loadIdentity(dir); again != nil {
		t.Fatal("the identity was written again with nothing new")
	}
}
