package stack

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// projectOf loads yml with compose-go alone, for tests of the mapping of one
// service without the spec's validation.
func projectOf(t *testing.T, yml string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "compose.yml")
	if err := os.WriteFile(f, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := cli.NewProjectOptions([]string{f}, cli.WithName("shop"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := o.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
