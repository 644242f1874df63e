package lb

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// A node finds the balancer tables in its namespace with their owners, and
// deletes the ones of nodes that are gone; other tables stay untouched.
func TestListAndDeleteTables(t *testing.T) {
	ns := newTestNS(t)
	ctx := context.Background()
	for _, tc := range []struct{ table, owner string }{{"swl-a", "c1"}, {"swl-b", "c2"}, {"swl-old", ""}} {
		b, err := New(KindNftables, Config{Logger: testLogger(t), TableName: tc.table, Owner: tc.owner, NetNSFd: ns.Fd()})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(ctx, vipTable("10.43.0.1", 80, "10.42.0.2:80")); err != nil {
			t.Fatal(err)
		}
	}
	ns.MustRun(t, "nft", "add", "table", "ip", "other")
	cfg := Config{NetNSFd: ns.Fd()}
	got, err := ListTables(cfg, "swl-")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b TableInfo) int { return strings.Compare(a.Name, b.Name) })
	want := []TableInfo{{"swl-a", "c1"}, {"swl-b", "c2"}, {"swl-old", ""}}
	if !slices.Equal(got, want) {
		t.Fatalf("ListTables = %v, want %v", got, want)
	}
	if err := DeleteTable(cfg, "swl-a"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteTable(cfg, "swl-nosuch"); err != nil {
		t.Fatalf("deleting a missing table: %v", err)
	}
	out := ns.MustRun(t, "nft", "list", "tables")
	if strings.Contains(out, "swl-a") || !strings.Contains(out, "swl-b") || !strings.Contains(out, "other") {
		t.Fatalf("after deleting swl-a:\n%s", out)
	}
}
