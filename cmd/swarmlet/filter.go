package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// filters is docker's --filter: KEY=VALUE, repeatable. Values of one key are
// alternatives (any may match); different keys must all match.
type filters map[string][]string

// filterFlag adds --filter (-f) to a listing.
func filterFlag(c *cobra.Command, raw *[]string, keys []string) {
	c.Flags().StringArrayVarP(raw, "filter", "f", nil, "filter rows: KEY=VALUE, one of "+strings.Join(keys, ", ")+" (repeat for more)")
}

// parseFilters checks every KEY=VALUE against the keys the listing knows.
func parseFilters(raw []string, keys []string) (filters, error) {
	f := filters{}
	for _, kv := range raw {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --filter %q: expected KEY=VALUE (keys: %s)", kv, strings.Join(keys, ", "))
		}
		if !slices.Contains(keys, k) {
			return nil, fmt.Errorf("invalid --filter %q: unknown key %q (keys: %s)", kv, k, strings.Join(keys, ", "))
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// match reports whether a row passes: for each key given, test must accept one of
// its values.
func (f filters) match(test func(key, value string) bool) bool {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.ContainsFunc(f[k], func(v string) bool { return test(k, v) }) {
			return false
		}
	}
	return true
}

// checkValues refuses values outside a closed set, naming the set.
func (f filters) checkValues(key string, allowed ...string) error {
	for _, v := range f[key] {
		if !slices.Contains(allowed, strings.ToLower(v)) {
			return fmt.Errorf("invalid --filter %s=%s: use one of %s", key, v, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// labelMatch is docker's label filter: "KEY" (present) or "KEY=VALUE".
func labelMatch(labels map[string]string, v string) bool {
	k, want, hasValue := strings.Cut(v, "=")
	got, ok := labels[k]
	return ok && (!hasValue || got == want)
}

// idMatch: docker matches IDs by prefix.
func idMatch(id, v string) bool { return v != "" && strings.HasPrefix(id, v) }

// nameMatch: docker matches names by prefix, too.
func nameMatch(name, v string) bool { return strings.HasPrefix(name, v) }
