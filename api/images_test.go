package api

import (
	"encoding/json"
	"testing"
)

// PREPARING sits between ASSIGNED and STARTING, travels by name, and a spec's
// image pins must be digests.
func TestPreparingAndPins(t *testing.T) {
	if !(TaskAssigned < TaskPreparing && TaskPreparing < TaskStarting) || TaskPreparing.Terminal() {
		t.Fatal("preparing is out of order")
	}
	b, _ := json.Marshal(TaskPreparing)
	var back TaskState
	if string(b) != `"preparing"` || json.Unmarshal(b, &back) != nil || back != TaskPreparing {
		t.Fatalf("preparing on the wire: %s -> %v", b, back)
	}
	// A state persisted by name before preparing existed reads back the same.
	for _, name := range []string{"assigned", "starting", "running", "rejected"} {
		var s TaskState
		if err := json.Unmarshal([]byte(`"`+name+`"`), &s); err != nil || s.String() != name {
			t.Fatalf("%s read back as %v (%v)", name, s, err)
		}
	}
	spec := ServiceSpec{Name: "web", Image: "app:dev", Mode: ModeReplicated, EndpointMode: EndpointVIP,
		RestartPolicy: RestartPolicy{Condition: RestartAny}}
	ok := spec
	ok.ImageID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := spec
	bad.ImageDigest = "sha256:xyz"
	if err := bad.Validate(); err == nil {
		t.Fatal("a malformed digest passed")
	}
}
