package lb

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks: request/response through a VIP versus straight to a backend.
//
//	go test ./lb/ -run '^$' -bench . -benchtime 2s [-lb.conc 4]
//
// Two modes: "conn" opens a new TCP connection per request (what the kernel
// balancers act on: the DNAT decision is made once per connection), "keepalive"
// sends requests over long-lived connections (the per-packet cost, where the
// userspace proxy pays for copying). Each reports req/s and p50/p99 latency.
// nftables runs in a test network namespace; userspace on host loopback (the
// proxy dials backends from its own goroutines, so it lives where they are).
// Everything is loopback or the test's own namespace.

var benchConcFlag = flag.Int("lb.conc", 4, "concurrent clients in lb benchmarks")

const benchMsgSize = 64

// startRR serves fixed-size request/response exchanges until the client closes.
func startRR(b *testing.B, addr string, listen func(string) (net.Listener, error)) string {
	ln, err := listen(addr)
	if err != nil {
		b.Fatalf("listen %s: %v", addr, err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, benchMsgSize)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// runLoad spreads b.N requests over benchConc workers. spawn starts a worker
// (in a namespace or not); each worker runs work(next) where next hands out
// request slots until b.N are done.
func runLoad(b *testing.B, spawn func(func() error) error, work func(next func() bool, lat *[]time.Duration) error) {
	var issued atomic.Int64
	next := func() bool { return issued.Add(1) <= int64(b.N) }
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	benchConc := *benchConcFlag
	errs := make(chan error, benchConc)
	b.ResetTimer()
	start := time.Now()
	for range benchConc {
		wg.Go(func() {
			var lat []time.Duration
			if err := spawn(func() error { return work(next, &lat) }); err != nil {
				errs <- err
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

func rr(c net.Conn, buf []byte) error {
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

// newConnWork: one connection per request.
func newConnWork(addr string) func(func() bool, *[]time.Duration) error {
	return func(next func() bool, lat *[]time.Duration) error {
		buf := make([]byte, benchMsgSize)
		for next() {
			t0 := time.Now()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			err = rr(c, buf)
			c.Close()
			if err != nil {
				return err
			}
			*lat = append(*lat, time.Since(t0))
		}
		return nil
	}
}

// keepaliveWork: one connection per worker, many requests. The dial happens
// first, on the calling thread (which matters inside a namespace).
func keepaliveWork(addr string) func(func() bool, *[]time.Duration) error {
	return func(next func() bool, lat *[]time.Duration) error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, benchMsgSize)
		for next() {
			t0 := time.Now()
			if err := rr(c, buf); err != nil {
				return err
			}
			*lat = append(*lat, time.Since(t0))
		}
		return nil
	}
}

func benchModes(b *testing.B, spawn func(func() error) error, addr string) {
	b.Run("conn", func(b *testing.B) { runLoad(b, spawn, newConnWork(addr)) })
	b.Run("keepalive", func(b *testing.B) { runLoad(b, spawn, keepaliveWork(addr)) })
}

func rrTable(vip string, port int, backends []string) Table {
	return vipTable(vip, port, backends...)
}

func BenchmarkNetns(b *testing.B) {
	ns := newTestNS(b)
	var backends []string
	for i := range 3 {
		backends = append(backends, startRR(b, fmt.Sprintf("127.0.0.%d:8080", 11+i), listenIn(ns)))
	}
	lb, err := New(KindNftables, Config{TableName: "swl-bench", NetNSFd: ns.Fd()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lb.Close() })
	if err := lb.Sync(context.Background(), rrTable("127.128.0.1", 80, backends)); err != nil {
		b.Fatal(err)
	}
	// Workers in the namespace (connection setup needs it; the rest is free).
	b.Run("direct", func(b *testing.B) { benchModes(b, ns.Do, backends[0]) })
	b.Run("nftables", func(b *testing.B) { benchModes(b, ns.Do, "127.128.0.1:80") })
}

func BenchmarkLoopback(b *testing.B) {
	plain := func(f func() error) error { return f() }
	var backends []string
	for i := range 3 {
		backends = append(backends, startRR(b, fmt.Sprintf("127.0.0.%d:0", 41+i), func(a string) (net.Listener, error) { return net.Listen("tcp", a) }))
	}
	lb, err := New(KindUserspace, Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lb.Close() })
	vip := freeAddr(b, "tcp", randVIP())
	h, p, _ := net.SplitHostPort(vip)
	var port int
	fmt.Sscan(p, &port)
	if err := lb.Sync(context.Background(), rrTable(h, port, backends)); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) { benchModes(b, plain, backends[0]) })
	b.Run("userspace", func(b *testing.B) { benchModes(b, plain, vip) })
}
