package dnsdisco

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// benchMix is the query mix of the benchmarks and of the dnsmasq
// comparison: VIP, task set, SRV, node name, and a negative answer.
var benchMix = []struct {
	name  string
	qtype uint16
}{
	{"web.swarmlet.", dns.TypeA},
	{"tasks.web.swarmlet.", dns.TypeA},
	{"web.swarmlet.", dns.TypeSRV},
	{"n1.nodes.swarmlet.", dns.TypeA},
	{"nope.swarmlet.", dns.TypeA},
}

// benchTable is testTable with web at ten tasks, a realistic answer size.
func benchTable() Table {
	tbl := testTable()
	web := tbl.Services["web"]
	web.Tasks = nil
	for i := range 10 {
		web.Tasks = append(web.Tasks, Task{
			Addr:  net.IPv4(198, 51, 100, byte(i+1)),
			Node:  "n1",
			Ports: []Port{{Proto: "tcp", Target: 80, HostPort: 30080 + i}},
		})
	}
	tbl.Services["web"] = web
	return tbl
}

func benchQueries(b *testing.B) [][]byte {
	var out [][]byte
	for _, q := range benchMix {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		raw, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// BenchmarkServeDNS measures the query path without sockets: unpack, answer,
// fit, pack.
func BenchmarkServeDNS(b *testing.B) {
	s := New(Config{Addr: "127.0.0.1:53", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetTable(benchTable())
	queries := benchQueries(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := new(dns.Msg)
		if err := req.Unpack(queries[i%len(queries)]); err != nil {
			b.Fatal(err)
		}
		resp := s.handle(req, true)
		if _, err := resp.Pack(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkQueryLoopback is the server end to end over loopback, each client
// goroutine keeping one socket and one query in flight.
func BenchmarkQueryLoopback(b *testing.B) {
	for _, network := range []string{"udp", "tcp"} {
		b.Run(network, func(b *testing.B) {
			s := New(Config{Addr: "127.0.0.1:0"})
			s.SetTable(benchTable())
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := &dns.Client{Net: network, Timeout: 5 * time.Second}
				conn, err := c.Dial(s.Addr())
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				for i := 0; pb.Next(); i++ {
					q := benchMix[i%len(benchMix)]
					m := new(dns.Msg)
					m.SetQuestion(q.name, q.qtype)
					if _, _, err := c.ExchangeWithConn(m, conn); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
		})
	}
}
