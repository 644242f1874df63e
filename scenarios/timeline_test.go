package scenarios

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestTimelineRecordsFaults(t *testing.T) {
	tl := NewTimeline(time.Now())
	f := tl.Begin("partition", "n1 | n2 n3", "n1")
	tl.Mark("heal")
	tl.End(f)
	tl.End(f) // a second heal keeps the first time
	fs, ms := tl.Snapshot()
	if len(fs) != 1 || fs[0].End < fs[0].Start || len(ms) != 1 {
		t.Fatalf("faults %+v marks %+v", fs, ms)
	}
}

func TestLeaderSpans(t *testing.T) {
	s := []StateSample{{T: 1, Leader: "a"}, {T: 2, Leader: "a"}, {T: 3, Leader: ""}, {T: 4, Leader: "b"}, {T: 5, Leader: "b"}}
	got := LeaderSpans(s, nil)
	if len(got) != 2 || got[0].Leader != "a" || got[0].End != 4 || got[1].Start != 4 || got[1].End != 5 {
		t.Fatalf("spans %+v", got)
	}
}

func TestRenderHTML(t *testing.T) {
	ops := h{}.
		w(0, FCreate, "a", 2, OK, 0, 100).
		w(1, FScale, "a", 3, Info, 50, 2000).
		w(2, FScale, "a", 4, Fail, 60, 80).
		read(3, "a", true, 2, 120, 130)
	r := Report{
		Title:    "Partition/majority <test>",
		Ops:      ops,
		Faults:   []Fault{{Kind: "partition", Desc: "n1 | n2 n3", Start: 10e6, End: 90e6}, {Kind: "kill", Desc: "n2", Start: 95e6, End: -1}},
		Marks:    []Mark{{T: 100e6, Label: "heal"}},
		Leaders:  []LeaderSpan{{Leader: "n1", Start: 0, End: 50e6}},
		Verdicts: []Verdict{{Checker: "linearizable", Status: Failed, Summary: "x", Details: []string{"a & b"}}},
		Counts:   CountOps(ops),
	}
	var b strings.Builder
	if err := RenderHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"&lt;test&gt;", "partition: n1 | n2 n3", "c3 via n1", outcomeColor[Info], outcomeColor[Fail], "a &amp; b", "heal"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	svg := out[strings.Index(out, "<svg") : strings.Index(out, "</svg>")+len("</svg>")]
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("svg is not well-formed: %v", err)
			}
			break
		}
	}
}
