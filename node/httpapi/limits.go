package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/swarmlet/swarmlet/api"
)

// Limits cap the requests that stay open for long: each holds a goroutine, a
// connection and, on the leader, a watch. Past a cap the API answers 503 at once
// with a clear message instead of piling up.
type Limits struct {
	Blocking int // blocking queries (?index=N) of lists
	Sessions int // workers' session long-polls
	Follows  int // followed logs (?follow=true)
}

// DefaultLimits suit a cluster of a few thousand nodes on one leader (a session
// waiting costs a goroutine and a connection; its wake-ups are the keeper's).
var DefaultLimits = Limits{Blocking: 256, Sessions: 4096, Follows: 64}

type limits struct {
	blocking, sessions, follows chan struct{}
}

func newLimits(l Limits) limits {
	mk := func(n, def int) chan struct{} {
		if n <= 0 {
			n = def
		}
		return make(chan struct{}, n)
	}
	return limits{blocking: mk(l.Blocking, DefaultLimits.Blocking), sessions: mk(l.Sessions, DefaultLimits.Sessions),
		follows: mk(l.Follows, DefaultLimits.Follows)}
}

// acquire takes a slot if r is a long request; release gives it back. It refuses
// with api.ErrBusy when the cap is reached.
func (l *limits) acquire(r *http.Request) (release func(), err error) {
	q := r.URL.Query()
	var sem chan struct{}
	var what string
	switch {
	case r.URL.Path == "/v1/dispatcher/assignments" && q.Get("index") != "" && q.Get("index") != "0":
		sem, what = l.sessions, "worker sessions"
	case q.Get("index") != "" && q.Get("index") != "0":
		sem, what = l.blocking, "blocking queries"
	default:
		if f, _ := strconv.ParseBool(q.Get("follow")); f {
			sem, what = l.follows, "followed logs"
		}
	}
	if sem == nil {
		return func() {}, nil
	}
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	default:
		return nil, fmt.Errorf("this node already serves %d %s, its limit: retry later or ask another node: %w", cap(sem), what, api.ErrBusy)
	}
}
