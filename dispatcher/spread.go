package dispatcher

import "github.com/swarmlet/swarmlet/api"

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
	vals := make([][]string, len(eligible))
	for i, ni := range eligible {
		vals[i] = make([]string, len(req.spread))
		for k, key := range req.spread {
			v, ok := api.PlacementValue(key, ni.node)
			if !ok {
				v = unlabelled
			}
			vals[i][k] = v
		}
	}
	dropped := make([]bool, len(eligible))
	all := make([]int, len(eligible))
	for i := range all {
		all[i] = i
	}
	set := make([]int, 0, len(eligible))
	sums, live := map[string]int{}, map[string]bool{}
	return func() *nodeInfo {
		counts := c.perService[req.serviceID]
		for {
			set = append(set[:0], all...)
			for k := range req.spread {
				clear(sums)
				clear(live)
				for _, i := range set {
					v := vals[i][k]
					sums[v] += counts[eligible[i].idx]
					if !dropped[i] {
						live[v] = true
					}
				}
				best, found := "", false
				for v := range live {
					if !found || sums[v] < sums[best] || sums[v] == sums[best] && v < best {
						best, found = v, true
					}
				}
				if !found {
					return nil // every node refused
				}
				kept := set[:0]
				for _, i := range set {
					if vals[i][k] == best {
						kept = append(kept, i)
					}
				}
				set = kept
			}
			if ni := c.pickIn(req, eligible, set, dropped, refusals); ni != nil {
				return ni
			}
			// Every node of the chosen group refused: they are dropped now, so
			// the next round chooses among the other groups.
		}
	}
}

// pickIn commits the task to the best node of set (indices into eligible) that
// takes it, marking those that refuse as dropped.
func (c *cluster) pickIn(req *request, eligible []*nodeInfo, set []int, dropped []bool, refusals refusals) *nodeInfo {
	counts := c.perService[req.serviceID]
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
			if sa, sb := counts[a.idx], counts[b.idx]; sa != sb {
				if sa < sb {
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
			return nil
		}
		ni := eligible[best]
		if why := c.refuseDynamic(req, ni); why != "" {
			refusals.add(why, ni.idx)
			dropped[best] = true
			continue
		}
		c.commit(ni, req, true)
		return ni
	}
}
