package scenarios

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Fault is one injected fault, from injection to heal, on the history's clock.
type Fault struct {
	Kind    string   `json:"kind"` // partition, loss, kill, pause, ...
	Desc    string   `json:"desc"`
	Targets []string `json:"targets,omitempty"`
	Start   int64    `json:"start_ns"`
	End     int64    `json:"end_ns"` // -1 while active
}

// Mark is an instant worth showing: heal, leader change, convergence.
type Mark struct {
	T     int64  `json:"t_ns"`
	Label string `json:"label"`
}

// Timeline records faults and marks on the same clock as a History.
type Timeline struct {
	start time.Time

	mu     sync.Mutex
	faults []*Fault
	marks  []Mark
}

// NewTimeline starts a timeline on the clock that starts at start.
func NewTimeline(start time.Time) *Timeline { return &Timeline{start: start} }

func (tl *Timeline) now() int64 { return int64(time.Since(tl.start)) }

// Begin records that a fault is now in force.
func (tl *Timeline) Begin(kind, desc string, targets ...string) *Fault {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	f := &Fault{Kind: kind, Desc: desc, Targets: targets, Start: tl.now(), End: -1}
	tl.faults = append(tl.faults, f)
	return f
}

// End records that f is healed.
func (tl *Timeline) End(f *Fault) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if f.End < 0 {
		f.End = tl.now()
	}
}

// Mark records an instant.
func (tl *Timeline) Mark(label string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.marks = append(tl.marks, Mark{T: tl.now(), Label: label})
}

// Snapshot returns copies of the faults and marks.
func (tl *Timeline) Snapshot() ([]Fault, []Mark) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	fs := make([]Fault, len(tl.faults))
	for i, f := range tl.faults {
		fs[i] = *f
	}
	return fs, append([]Mark(nil), tl.marks...)
}

// LeaderSpan is a period during which one node was seen as leader.
type LeaderSpan struct {
	Leader string
	Start  int64
	End    int64
}

// LeaderSpans condenses state samples into who-was-leader periods, as the nodes
// reported it (the most recent non-empty report wins), for drawing.
func LeaderSpans(samples []StateSample, resolve func(string) string) []LeaderSpan {
	s := append([]StateSample(nil), samples...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].T < s[j].T })
	var spans []LeaderSpan
	for _, x := range s {
		if x.Leader == "" {
			continue
		}
		l := x.Leader
		if resolve != nil {
			l = resolve(l)
		}
		if n := len(spans); n > 0 && spans[n-1].Leader == l {
			spans[n-1].End = x.T
			continue
		}
		if n := len(spans); n > 0 {
			spans[n-1].End = x.T
		}
		spans = append(spans, LeaderSpan{Leader: l, Start: x.T, End: x.T})
	}
	return spans
}

// Report is everything the HTML timeline shows.
type Report struct {
	Title    string
	Ops      []Op
	Faults   []Fault
	Marks    []Mark
	Leaders  []LeaderSpan
	Verdicts []Verdict
	Counts   Counts
	Notes    []string
}

var outcomeColor = map[Outcome]string{OK: "#2e9e44", Fail: "#d33", Info: "#f0a020"}

var faultColors = []string{"#7aa6ff", "#c58bff", "#ff8fa3", "#8fe3cf", "#ffd36b", "#b0b0b0"}

// RenderHTML writes a self-contained HTML page: an SVG with one lane per client
// (operations as bars coloured by outcome, reads paler), faults as translucent
// bands across all lanes, a leader lane and marks, then the verdicts.
func RenderHTML(w io.Writer, r Report) error {
	var end int64 = 1
	for _, op := range r.Ops {
		end = max(end, op.Invoke, op.Complete)
	}
	for _, f := range r.Faults {
		end = max(end, f.Start, f.End)
	}
	for _, m := range r.Marks {
		end = max(end, m.T)
	}
	end += end / 50

	clients := map[int]string{}
	for _, op := range r.Ops {
		clients[op.Client] = op.Node
	}
	ids := make([]int, 0, len(clients))
	for id := range clients {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	lane := map[int]int{}
	for i, id := range ids {
		lane[id] = i
	}

	const (
		left   = 110.0
		width  = 1400.0
		laneH  = 14.0
		top    = 60.0 // fault labels and the leader lane live above the client lanes
		bottom = 30.0
	)
	height := top + laneH*float64(len(ids)) + bottom
	x := func(t int64) float64 { return left + width*float64(t)/float64(end) }

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("<!doctype html><meta charset=utf-8><title>%s</title>\n", html.EscapeString(r.Title))
	p("<style>body{font:13px sans-serif;margin:16px} pre{background:#f6f6f6;padding:8px} .pass{color:#2e9e44} .fail{color:#d33} .unknown,.skip{color:#b07000}</style>\n")
	p("<h2>%s</h2>\n", html.EscapeString(r.Title))
	p("<p>%d operations: %d ok, %d fail, %d info (writes %d, acknowledged %d). Green ok, red fail, orange info (unknown outcome, drawn to the end); pale bars are reads. Bands are faults.</p>\n",
		r.Counts.Attempted, r.Counts.OK, r.Counts.Fail, r.Counts.Info, r.Counts.Writes, r.Counts.WritesOK)
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="10">`+"\n", left+width+20, height)
	p(`<rect x="0" y="0" width="%.0f" height="%.0f" fill="white"/>`+"\n", left+width+20, height)

	for i, f := range r.Faults {
		fe := f.End
		if fe < 0 {
			fe = end
		}
		c := faultColors[i%len(faultColors)]
		p(`<rect x="%.1f" y="14" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.25"><title>%s</title></rect>`+"\n",
			x(f.Start), max(x(fe)-x(f.Start), 1), height-14-bottom+4, c, html.EscapeString(fmt.Sprintf("%s: %s [%.2fs-%.2fs]", f.Kind, f.Desc, sec(f.Start), sec(fe))))
		p(`<text x="%.1f" y="%d" fill="#333">%s</text>`+"\n", x(f.Start)+2, 12+(i%2)*12, html.EscapeString(truncate(f.Kind+": "+f.Desc, 40)))
	}

	ly := top - 22
	p(`<text x="4" y="%.1f">leader</text>`+"\n", ly+10)
	leaderColor := map[string]string{}
	for _, s := range r.Leaders {
		c, ok := leaderColor[s.Leader]
		if !ok {
			c = faultColors[len(leaderColor)%len(faultColors)]
			leaderColor[s.Leader] = c
		}
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="12" fill="%s"><title>%s</title></rect>`+"\n",
			x(s.Start), ly, max(x(s.End)-x(s.Start), 1), c, html.EscapeString(fmt.Sprintf("leader %s %.2fs-%.2fs", s.Leader, sec(s.Start), sec(s.End))))
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", x(s.Start)+2, ly+10, html.EscapeString(truncate(s.Leader, 12)))
	}

	for _, id := range ids {
		y := top + laneH*float64(lane[id])
		p(`<text x="4" y="%.1f">c%d via %s</text>`+"\n", y+10, id, html.EscapeString(clients[id]))
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, left+width, y+laneH-1, y+laneH-1)
	}
	for _, op := range r.Ops {
		y := top + laneH*float64(lane[op.Client])
		ce := op.Complete
		if op.Outcome == Info || ce < 0 {
			ce = end
		}
		op := op
		if op.Outcome == Info && op.Complete >= 0 && !IsWrite(op.F) {
			ce = op.Complete // an unknown read has no effect to wait for
		}
		opacity := 1.0
		if !IsWrite(op.F) {
			opacity = 0.4
		}
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.1f" stroke="white" stroke-width="0.5"><title>%s</title></rect>`+"\n",
			x(op.Invoke), y+1, max(x(ce)-x(op.Invoke), 1.5), laneH-3, outcomeColor[op.Outcome], opacity, html.EscapeString(describeWithKey(op)))
	}
	for _, m := range r.Marks {
		p(`<line x1="%.1f" x2="%.1f" y1="14" y2="%.1f" stroke="#000" stroke-dasharray="3,3"/>`+"\n", x(m.T), x(m.T), height-bottom)
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", x(m.T)+2, height-bottom+12, html.EscapeString(m.Label))
	}
	for s := int64(0); s <= end; s += tickStep(end) {
		p(`<text x="%.1f" y="%.1f" fill="#888">%.0fs</text>`+"\n", x(s), height-4, sec(s))
	}
	p("</svg>\n<h3>Verdicts</h3>\n<ul>\n")
	for _, v := range r.Verdicts {
		p(`<li><b class="%s">%s</b> %s: %s`, v.Status, strings.ToUpper(string(v.Status)), html.EscapeString(v.Checker), html.EscapeString(v.Summary))
		if len(v.Details) > 0 {
			p("<pre>%s</pre>", html.EscapeString(strings.Join(v.Details, "\n")))
		}
		p("</li>\n")
	}
	p("</ul>\n")
	if len(r.Notes) > 0 {
		p("<h3>Notes</h3><pre>%s</pre>\n", html.EscapeString(strings.Join(r.Notes, "\n")))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeWithKey(op Op) string {
	s := describe(op)
	if op.Key != "" {
		s = op.Key + " " + s
	}
	switch {
	case op.F == FInspect && op.Outcome == OK:
		s += fmt.Sprintf(" -> %v", SvcState{Exists: op.Exists, Replicas: op.Replicas})
	case op.F == FList && op.Outcome == OK:
		s += fmt.Sprintf(" -> %d services", len(op.Listing))
	}
	return s
}

func sec(ns int64) float64 { return float64(ns) / 1e9 }

func tickStep(end int64) int64 {
	step := int64(time.Second)
	for end/step > 20 {
		step *= 2
	}
	return step
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
