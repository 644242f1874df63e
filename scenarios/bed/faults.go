package bed

import (
	"bytes"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// faultTable filters what the bridge forwards, in the switch namespace: the
// hosts' own firewalls (Docker's among them) are left as Docker made them.
const faultTable = "swlbed"

// faults is the set of cuts in force; every change rewrites the whole chain in
// one nft transaction, so the network moves from one state to the next
// without an instant of neither.
type faults struct {
	mu sync.Mutex
	ns string
	faultSet
}

type faultSet struct {
	hosts map[int]bool    // cut off from everyone
	pairs map[[2]int]bool // cut from each other; lower index first
}

func (f *faults) init(ns string) error {
	f.ns = ns
	f.hosts = map[int]bool{}
	f.pairs = map[[2]int]bool{}
	return nft(ns, fmt.Sprintf("table bridge %s {\n  chain forward { type filter hook forward priority 0; policy accept; }\n}\n", faultTable))
}

func (f *faults) set(change func(*faultSet)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := faultSet{hosts: maps.Clone(f.hosts), pairs: maps.Clone(f.pairs)}
	change(&next)
	if err := nft(f.ns, next.script()); err != nil {
		return err
	}
	f.faultSet = next
	return nil
}

func (s faultSet) script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain bridge %s forward\n", faultTable)
	for _, i := range slices.Sorted(maps.Keys(s.hosts)) {
		fmt.Fprintf(&b, "add rule bridge %s forward iifname \"h%d\" drop\n", faultTable, i)
		fmt.Fprintf(&b, "add rule bridge %s forward oifname \"h%d\" drop\n", faultTable, i)
	}
	pairs := slices.SortedFunc(maps.Keys(s.pairs), func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	for _, p := range pairs {
		fmt.Fprintf(&b, "add rule bridge %s forward iifname \"h%d\" oifname \"h%d\" drop\n", faultTable, p[0], p[1])
		fmt.Fprintf(&b, "add rule bridge %s forward iifname \"h%d\" oifname \"h%d\" drop\n", faultTable, p[1], p[0])
	}
	return b.String()
}

func pair(a, b *Host) [2]int {
	if a.Index > b.Index {
		a, b = b, a
	}
	return [2]int{a.Index, b.Index}
}

// CutBetween drops every frame between two hosts; both still reach the rest.
func (b *Bed) CutBetween(x, y *Host) error {
	return b.faults.set(func(f *faultSet) { f.pairs[pair(x, y)] = true })
}

// HealBetween undoes CutBetween.
func (b *Bed) HealBetween(x, y *Host) error {
	return b.faults.set(func(f *faultSet) { delete(f.pairs, pair(x, y)) })
}

// HealAll removes every cut.
func (b *Bed) HealAll() error {
	return b.faults.set(func(f *faultSet) { clear(f.hosts); clear(f.pairs) })
}

func nft(ns, script string) error {
	cmd := exec.Command("nsenter", "--net="+nsPath(ns), "--", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s\nscript:\n%s", ns, err, bytes.TrimSpace(out), script)
	}
	return nil
}
