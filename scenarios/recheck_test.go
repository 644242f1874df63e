package scenarios

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRecheck runs the history checkers again on a saved run:
// SWL_RECHECK=results/TestX/y go test ./scenarios -run TestRecheck -v
func TestRecheck(t *testing.T) {
	dir := os.Getenv("SWL_RECHECK")
	if dir == "" {
		t.Skip("set SWL_RECHECK to a results folder")
	}
	ops, err := ReadHistory(filepath.Join(dir, "history.json"))
	if err != nil {
		t.Fatal(err)
	}
	ops = Reclassify(ops)
	final := map[string]int{}
	for _, op := range ops {
		if op.Final && op.Outcome == OK && op.F == FList {
			final = op.Listing
			break
		}
	}
	for _, v := range []Verdict{
		CheckLinearizable(ops, linTimeout, filepath.Join(dir, "linearizability.html")),
		CheckLostWrites(stopAtFinal(ops), final),
		CheckFailedNotApplied(ops),
	} {
		if v.Status == Failed {
			t.Errorf("%v", v)
		} else {
			t.Logf("%v", v)
		}
	}
}

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
