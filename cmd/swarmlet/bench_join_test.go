package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// BenchmarkJoin: a manager, then 6 workers joining one after the other; time from
// starting 'swarmlet join' to the new node answering on its socket (join handshake,
// certificate, Raft entry, gossip, API), and the join exchange alone as the joining
// node logs it. Uses 127.66.5.x.
//
//	go test ./cmd/swarmlet -run '^$' -bench Join -benchtime 1x -v
func BenchmarkJoin(b *testing.B) {
	c := newBenchCluster(b, 66)
	c.sub = 5
	c.start(1, "")
	tok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	took := regexp.MustCompile(`msg=joined .*took=([0-9.]+[mµn]?s)`)
	var ready, exchange []time.Duration
	for i := 2; i <= 7; i++ {
		t0 := time.Now()
		c.start(i, tok)
		ready = append(ready, time.Since(t0))
		if m := took.FindStringSubmatch(c.log(i)); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				exchange = append(exchange, d)
			}
		}
	}
	report(b, "join-to-ready", ready)
	if len(exchange) > 0 {
		report(b, "join-exchange", exchange)
	}
}
