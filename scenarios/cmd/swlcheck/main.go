// Command swlcheck works on recorded scenario runs:
//
//	go run ./scenarios/cmd/swlcheck report            # median/worst table of every recorded run
//	go run ./scenarios/cmd/swlcheck recheck DIR       # rerun the history checkers on results/TestX/y
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/swarmlet/swarmlet/scenarios"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+err.Error())
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: swlcheck report [SUMMARY.jsonl] | recheck RESULTS_DIR")
	}
	switch args[0] {
	case "report":
		path := filepath.Join("scenarios", scenarios.SummaryPath)
		if len(args) > 1 {
			path = args[1]
		}
		rs, err := scenarios.ReadSummary(path)
		if err != nil {
			return fmt.Errorf("read %s: %w (run some scenarios first)", path, err)
		}
		table := scenarios.Summarize(rs)
		fmt.Print(table)
		return os.WriteFile(filepath.Join(filepath.Dir(path), "summary.md"), []byte(table), 0o644)
	case "recheck":
		if len(args) != 2 {
			return fmt.Errorf("usage: swlcheck recheck RESULTS_DIR")
		}
		vs, err := scenarios.Recheck(args[1])
		if err != nil {
			return err
		}
		failed := false
		for _, v := range vs {
			fmt.Println(v)
			failed = failed || v.Status == scenarios.Failed
		}
		if failed {
			return fmt.Errorf("a checker failed")
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q: use report or recheck", args[0])
	}
}
