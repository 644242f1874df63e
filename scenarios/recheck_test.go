package scenarios

import (
	"path/filepath"
	"testing"
	"time"
)

func TestReclassify(t *testing.T) {
	ops := h{}.read(0, "a", false, 0, 1, 2)
	ops[0].Err = "cannot reach the swarmlet daemon at unix:///x: dial unix /x: connect: no such file or directory"
	ops[0].ErrKind = ErrKindNotFound
	got := Reclassify(ops)
	if got[0].Outcome != Fail || got[0].ErrKind != "" {
		t.Fatalf("%+v", got[0])
	}
	if ops[0].Outcome != OK {
		t.Fatal("Reclassify modified its input")
	}
}

// TestRecheck: a saved history is checked again from its folder, and a stale read
// saved there is caught.
func TestRecheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale bool
	}{{"linearizable", false}, {"stale read", true}} {
		t.Run(tc.name, func(t *testing.T) {
			hist := NewHistoryAt(time.Now())
			create := hist.Invoke(Op{Client: 0, F: FCreate, Key: "a", Value: 3})
			hist.Complete(create, OK)
			read := hist.Invoke(Op{Client: 1, F: FInspect, Key: "a"})
			read.Exists, read.Replicas = !tc.stale, 3
			hist.Complete(read, OK)
			dir := t.TempDir()
			if err := WriteJSON(filepath.Join(dir, "history.json"), hist.Ops()); err != nil {
				t.Fatal(err)
			}
			vs, err := Recheck(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := vs[0].Status == Failed; got != tc.stale {
				t.Fatalf("linearizability verdict %v, want failed=%v", vs[0], tc.stale)
			}
		})
	}
}
