package dispatcher

import (
	"slices"

	"github.com/swarmlet/swarmlet/api"
)

// unlabelled is the group key of nodes that lack a spread key's label: a group
// of their own, apart from every value (the empty one too), last among equals.
const unlabelled = "\xff\xffunlabelled"

// spreadPicker places a group whose spec has placement preferences, as Swarm's
// spread does: the eligible nodes are split by their value of the first key
// (nodes without it form a group of their own), the task goes to the group that
// holds the fewest of the service's tasks, that group is split by the second key,
// and so on; within the last group the usual order picks the node (fewest of the
// service, fewest tasks, node ID). Groups are compared by their counts, not per
// node: two zones share the tasks evenly whatever number of nodes each has.
//
// A group whose nodes all refuse (full, ports taken, at the cap per node) drops
// out and the next one takes the task; its tasks still count, so the others are
// not filled to even it out.
func (c *cluster) spreadPicker(req *request, eligible []*nodeInfo, refusals refusals) func() *nodeInfo {
	// Each node's value per key becomes a group number, numbered in the order
	// of the values, so that ties go to the lowest value and a pass needs no map.
	groups := make([][]int, len(eligible))
	for i := range groups {
		groups[i] = make([]int, len(req.spread))
	}
	width := make([]int, len(req.spread))
	for k, key := range req.spread {
		vals := make([]string, len(eligible))
		for i, ni := range eligible {
			v, ok := api.PlacementValue(key, ni.node)
			if !ok {
				v = unlabelled
			}
			vals[i] = v
		}
		sorted := slices.Compact(slices.Sorted(slices.Values(vals)))
		for i, v := range vals {
			groups[i][k], _ = slices.BinarySearch(sorted, v)
		}
		width[k] = len(sorted)
	}
	dropped := make([]bool, len(eligible))
	// count is each node's share of the service, copied in once: only this
	// group places tasks of the service until it is done.
	count := make([]int, len(eligible))
	for i, ni := range eligible {
		count[i] = c.perService[req.serviceID][ni.idx]
	}
	set := make([]int, 0, len(eligible))
	sums := make([]int, slices.Max(append(width, 0)))
	live := make([]bool, len(sums))
	return func() *nodeInfo {
		for {
			set = set[:0]
			for i := range eligible {
				set = append(set, i)
			}
			for k := range req.spread {
				clear(sums[:width[k]])
				clear(live[:width[k]])
				for _, i := range set {
					g := groups[i][k]
					sums[g] += count[i]
					live[g] = live[g] || !dropped[i]
				}
				best := -1
				for g := range width[k] {
					if live[g] && (best < 0 || sums[g] < sums[best]) {
						best = g
					}
				}
				if best < 0 {
					return nil // every node refused
				}
				kept := set[:0]
				for _, i := range set {
					if groups[i][k] == best {
						kept = append(kept, i)
					}
				}
				set = kept
			}
			if i := c.pickIn(req, eligible, count, set, dropped, refusals); i >= 0 {
				count[i]++
				return eligible[i]
			}
			// Every node of the chosen group refused: they are dropped now, so
			// the next round chooses among the other groups.
		}
	}
}

// pickIn commits the task to the best node of set (indices into eligible and
// count) that takes it, marking those that refuse as dropped, and returns its
// index, or -1 if none does.
func (c *cluster) pickIn(req *request, eligible []*nodeInfo, count, set []int, dropped []bool, refusals refusals) int {
	for {
		best := -1
		for _, i := range set {
			if dropped[i] {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			a, b := eligible[i], eligible[best]
			if count[i] != count[best] {
				if count[i] < count[best] {
					best = i
				}
				continue
			}
			if a.tasks != b.tasks {
				if a.tasks < b.tasks {
					best = i
				}
				continue
			}
			if a.idx < b.idx {
				best = i
			}
		}
		if best < 0 {
			return -1
		}
		ni := eligible[best]
		if why := c.refuseDynamic(req, ni); why != "" {
			refusals.add(why, ni.idx)
			dropped[best] = true
			continue
		}
		c.commit(ni, req, true)
		return best
	}
}
