package token

import (
	"strings"
	"testing"
)

func TestRandomID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := RandomID(12)
		if len(id) != 12 || strings.ToLower(id) != id || seen[id] {
			t.Fatalf("RandomID gave %q", id)
		}
		seen[id] = true
	}
}
