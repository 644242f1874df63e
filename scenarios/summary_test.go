package scenarios

import (
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	rs := []Result{
		{Scenario: "TestKill/leader", Counts: Counts{Attempted: 10, OK: 8, Fail: 1, Info: 1}, Convergence: 2 * time.Second, Agreement: time.Second},
		{Scenario: "TestKill/leader", Counts: Counts{Attempted: 10, OK: 10}, Convergence: 4 * time.Second, Agreement: time.Second},
		{Scenario: "TestKill/leader", Counts: Counts{Attempted: 10, OK: 10}, Convergence: -1, Agreement: 3 * time.Second, Failed: true,
			Verdicts: []Verdict{{Checker: "convergence", Status: Failed}}},
	}
	got := Summarize(rs)
	want := "| TestKill/leader | 3 | 1 | 30/28/1/1 | 4.0s / never | 1.0s / 3.0s | convergence×1 |"
	if !strings.Contains(got, want) {
		t.Fatalf("got\n%s\nwant a row\n%s", got, want)
	}
}
