package stack

import (
	"fmt"
	"io"
	"strings"
)

// Write prints the plan as `nomad job plan` does: + create, ~ update with the
// fields that change, - remove; then the counts. A secret's data is never
// printed, only where it comes from.
func (p *Plan) Write(w io.Writer) {
	for _, c := range p.Services {
		switch c.Action {
		case Create:
			fmt.Fprintf(w, "+ service %s (create)\n", c.Name)
		case Update:
			how := "tasks unchanged: only replicas or update settings change"
			if c.Rolls {
				how = "rolling update"
				if u := c.Spec.Update; u != nil {
					how += fmt.Sprintf(", %s at a time, %s", parallelism(u.Parallelism), u.Order)
				}
			}
			fmt.Fprintf(w, "~ service %s (update: %s)\n", c.Name, how)
			for _, f := range c.Fields {
				switch {
				case f.Old == "":
					fmt.Fprintf(w, "    + %s: %s\n", f.Path, clip(f.New))
				case f.New == "":
					fmt.Fprintf(w, "    - %s: %s\n", f.Path, clip(f.Old))
				default:
					fmt.Fprintf(w, "    ~ %s: %s => %s\n", f.Path, clip(f.Old), clip(f.New))
				}
			}
		case Remove:
			fmt.Fprintf(w, "- service %s (remove)\n", c.Name)
		case Unchanged:
			fmt.Fprintf(w, "  service %s (unchanged)\n", c.Name)
		case Kept:
			fmt.Fprintf(w, "  service %s (not in the files: kept; --prune removes it)\n", c.Name)
		}
	}
	for _, o := range p.Objects {
		switch o.Action {
		case Create:
			fmt.Fprintf(w, "+ %s %s (create, from %s)\n", o.Kind, o.Object.Name, o.Object.From)
		case Update:
			fmt.Fprintf(w, "~ %s %s (a new version if %s differs from what is stored)\n", o.Kind, o.Object.Name, o.Object.From)
		case Unchanged:
			fmt.Fprintf(w, "  %s %s (external)\n", o.Kind, o.Object.Name)
		}
	}
	n := p.Counts()
	fmt.Fprintf(w, "\nPlan: %d to create, %d to update, %d to remove, %d unchanged.\n", n[Create], n[Update], n[Remove], n[Unchanged]+n[Kept])
}

func parallelism(n int64) string {
	if n == 0 {
		return "all"
	}
	return fmt.Sprint(n)
}

// clip keeps one field's value to a readable line.
func clip(s string) string {
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}
