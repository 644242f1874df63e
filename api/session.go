package api

import (
	"errors"
	"fmt"
	"sort"
)

// ErrSessionGap: a delta answer that does not follow the view it was applied to
// (another index, or a task named without its record). Ask again from index 0.
var ErrSessionGap = errors.New("session answer does not follow the last one")

// SessionView is a worker's side of a session with deltas: the whole assignments
// of the last answer, moved forward by each delta. Whole assignments it returns
// are never changed afterwards, so consumers may keep them.
type SessionView struct {
	cur   *Assignments
	tasks map[string]*Task
	svcs  map[string]*viewService
	nodes map[string]Node
}

type viewService struct {
	head ServiceEndpoints // without Tasks
	eps  map[string]Endpoint
	list []Endpoint // materialised, nil when out of date
}

// Index is the index of the last answer applied (0 before any, or after Reset):
// the one to send with the next request.
func (v *SessionView) Index() uint64 {
	if v.cur == nil {
		return 0
	}
	return v.cur.Index
}

// Reset forgets the view: the next answer must be whole.
func (v *SessionView) Reset() { *v = SessionView{} }

// Apply takes the next answer, whole or delta, and returns the whole assignments
// it leaves the worker with.
func (v *SessionView) Apply(a Assignments) (Assignments, error) {
	if !a.Delta {
		v.whole(a)
		return *v.cur, nil
	}
	if v.cur == nil || a.Since != v.cur.Index {
		have := v.Index()
		v.Reset()
		return Assignments{}, fmt.Errorf("delta since %d applied to the view at %d: %w", a.Since, have, ErrSessionGap)
	}
	changed := make(map[string]*Task, len(a.Tasks))
	for _, t := range a.Tasks {
		changed[t.ID] = t
	}
	tasks := make(map[string]*Task, len(a.TaskIDs))
	list := make([]*Task, 0, len(a.TaskIDs))
	for _, id := range a.TaskIDs {
		t := changed[id]
		if t == nil {
			t = v.tasks[id]
		}
		if t == nil {
			v.Reset()
			return Assignments{}, fmt.Errorf("delta names task %s, unknown to the view: %w", id, ErrSessionGap)
		}
		tasks[id] = t
		list = append(list, t)
	}
	nodes := v.cur.Nodes
	if len(a.Nodes)+len(a.NodesGone) > 0 {
		for _, n := range a.Nodes {
			v.nodes[n.ID] = n
		}
		for _, id := range a.NodesGone {
			delete(v.nodes, id)
		}
		nodes = v.nodeList()
	}
	for _, se := range a.Endpoints {
		v.service(se, se.Tasks, se.Gone)
	}
	for _, sr := range a.Rows {
		v.service(sr.header(), v.endpoints(sr), sr.Gone)
	}
	for _, name := range a.EndpointsGone {
		delete(v.svcs, name)
	}
	out := a
	out.Delta, out.Since, out.TaskIDs, out.EndpointsGone, out.NodesGone, out.Rows = false, 0, nil, nil, nil, nil
	out.Tasks, out.Nodes = list, nodes
	out.Endpoints = v.endpointList()
	if out.CA == "" {
		out.CA = v.cur.CA
	}
	if len(out.GossipKeys) == 0 {
		out.GossipKeys = v.cur.GossipKeys
	}
	if out.Node == nil {
		out.Node = v.cur.Node
	}
	v.tasks, v.cur = tasks, &out
	return out, nil
}

func (v *SessionView) whole(a Assignments) {
	v.tasks = make(map[string]*Task, len(a.Tasks))
	for _, t := range a.Tasks {
		v.tasks[t.ID] = t
	}
	v.nodes = make(map[string]Node, len(a.Nodes))
	for _, n := range a.Nodes {
		v.nodes[n.ID] = n
	}
	v.svcs = make(map[string]*viewService, len(a.Endpoints)+len(a.Rows))
	for _, se := range a.Endpoints {
		s := &viewService{head: se, eps: make(map[string]Endpoint, len(se.Tasks)), list: se.Tasks}
		s.head.Tasks, s.head.Gone = nil, nil
		for _, ep := range se.Tasks {
			s.eps[ep.TaskID] = ep
		}
		v.svcs[se.Service] = s
	}
	for _, sr := range a.Rows {
		v.service(sr.header(), v.endpoints(sr), nil)
	}
	if len(a.Rows) > 0 {
		a.Endpoints, a.Rows = v.endpointList(), nil
	}
	v.cur = &a
}

// service applies one service's part of an answer.
func (v *SessionView) service(head ServiceEndpoints, added []Endpoint, gone []string) {
	s := v.svcs[head.Service]
	if s == nil {
		s = &viewService{eps: map[string]Endpoint{}}
		v.svcs[head.Service] = s
	}
	s.head = head
	s.head.Tasks, s.head.Gone = nil, nil
	for _, ep := range added {
		s.eps[ep.TaskID] = ep
	}
	for _, id := range gone {
		delete(s.eps, id)
	}
	s.list = nil
}

// endpoints turns a service's rows into endpoints, with their nodes' addresses.
func (v *SessionView) endpoints(sr ServiceRows) []Endpoint {
	out := make([]Endpoint, 0, len(sr.Rows))
	for _, r := range sr.Rows {
		out = append(out, r.Endpoint(sr.Service, v.nodes[r.NodeID].Addr))
	}
	return out
}

func (sr ServiceRows) header() ServiceEndpoints {
	return ServiceEndpoints{Service: sr.Service, VIP: sr.VIP, EndpointMode: sr.EndpointMode, Ports: sr.Ports}
}

func (v *SessionView) endpointList() []ServiceEndpoints {
	names := make([]string, 0, len(v.svcs))
	for name := range v.svcs {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]ServiceEndpoints, 0, len(names))
	for _, name := range names {
		s := v.svcs[name]
		if s.list == nil {
			ids := make([]string, 0, len(s.eps))
			for id := range s.eps {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			s.list = make([]Endpoint, 0, len(ids))
			for _, id := range ids {
				s.list = append(s.list, s.eps[id])
			}
		}
		se := s.head
		se.Tasks = s.list
		out = append(out, se)
	}
	return out
}

func (v *SessionView) nodeList() []Node {
	ids := make([]string, 0, len(v.nodes))
	for id := range v.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]Node, 0, len(ids))
	for _, id := range ids {
		out = append(out, v.nodes[id])
	}
	return out
}
