package worker

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// A task adopted after a daemon restart that was healthy before keeps serving:
// its health is not reported as starting again while its check warms up, which
// would take it out of DNS and the VIP for nothing.
func TestAgentAdoptedHealthyTaskStaysHealthy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	hp, _ := strconv.Atoi(port)

	eng, mgr := newFakeEngine(), newFakeManager()
	mgr.history = map[string][]api.TaskStatus{}
	ports := []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: hp}}
	eng.running["kept"] = engine.Instance{TaskID: "kept", ID: "c-kept", State: api.TaskRunning, Addr: "127.0.0.1", HostAddr: "127.0.0.1", Ports: ports}
	eng.running["other"] = engine.Instance{TaskID: "other", ID: "c-new", State: api.TaskRunning, Addr: "127.0.0.1", HostAddr: "127.0.0.1", Ports: ports}
	startAgent(t, eng, mgr)
	h := &api.HealthCheck{HTTPPath: "/health", Interval: 50 * time.Millisecond, Retries: 2}
	kept := checkedTask("kept", "img", h)
	kept.Status = api.TaskStatus{State: api.TaskRunning, Health: api.HealthHealthy, ContainerID: "c-kept"}
	// Healthy before, but in another container: this one has passed no check.
	other := checkedTask("other", "img", h)
	other.Status = api.TaskStatus{State: api.TaskRunning, Health: api.HealthHealthy, ContainerID: "c-old"}
	mgr.set(kept, other)
	waitUntil(t, "other reported", func() bool { return len(mgr.reports("other")) > 0 })
	if rs := mgr.reports("other"); rs[0].Health != api.HealthStarting {
		t.Fatalf("a new container's first report %+v: want starting", rs[0])
	}
	for i := 0; i < 3; i++ {
		mgr.bump()
		time.Sleep(60 * time.Millisecond)
	}
	for _, st := range mgr.reports("kept") {
		if st.Health != api.HealthHealthy {
			t.Fatalf("the adopted task was reported %q: %+v", st.Health, mgr.reports("kept"))
		}
	}
}
