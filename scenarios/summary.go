package scenarios

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// ReadSummary loads results/summary.jsonl.
func ReadSummary(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// Summarize renders a markdown table: per scenario, the runs, the operation
// counts of the runs, convergence and agreement times after heal (median and
// worst), and which checkers failed in how many runs.
func Summarize(results []Result) string {
	by := map[string][]Result{}
	for _, r := range results {
		by[r.Scenario] = append(by[r.Scenario], r)
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("| scenario | runs | failed | ops attempted/ok/fail/info (sum) | convergence median / worst | managers agree median / worst | failing checkers |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, n := range names {
		rs := by[n]
		var c Counts
		var conv, agree []time.Duration
		failed := 0
		checkers := map[string]int{}
		for _, r := range rs {
			c.Attempted += r.Counts.Attempted
			c.OK += r.Counts.OK
			c.Fail += r.Counts.Fail
			c.Info += r.Counts.Info
			conv = append(conv, r.Convergence)
			agree = append(agree, r.Agreement)
			if r.Failed {
				failed++
			}
			for _, v := range r.Verdicts {
				if v.Status == Failed {
					checkers[v.Checker]++
				}
			}
		}
		var fc []string
		for k, v := range checkers {
			fc = append(fc, fmt.Sprintf("%s×%d", k, v))
		}
		sort.Strings(fc)
		fmt.Fprintf(&b, "| %s | %d | %d | %d/%d/%d/%d | %s | %s | %s |\n", n, len(rs), failed,
			c.Attempted, c.OK, c.Fail, c.Info, medianWorst(conv), medianWorst(agree), strings.Join(fc, " "))
	}
	return b.String()
}

// medianWorst of durations where a negative one means "never": it is the worst.
func medianWorst(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	never := func(d time.Duration) bool { return d < 0 }
	sort.Slice(s, func(i, j int) bool {
		if never(s[i]) != never(s[j]) {
			return !never(s[i])
		}
		return s[i] < s[j]
	})
	f := func(d time.Duration) string {
		if never(d) {
			return "never"
		}
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return f(s[(len(s)-1)/2]) + " / " + f(s[len(s)-1])
}
