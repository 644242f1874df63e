package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The client side, for tests that run inside a container (docker exec): the
// image is FROM scratch, so it has no shell, curl or dig of its own. Names are
// resolved by Go's own resolver, from the container's /etc/resolv.conf.
//
//	whoami get URL [N]               N requests (default 1), one connection each; prints each answer
//	whoami resolve NAME              prints NAME's addresses
//	whoami loop URL DURATION         requests back to back; prints requests= failed= first_error=
//	whoami bench DURATION C URL...   C concurrent clients, round robin over the URLs; prints requests= seconds= rps= failed=
//	whoami dnsbench NAME DURATION [C [SERVER]]  lookups, through resolv.conf or SERVER (ip:port)
//	whoami pair DURATION C URL_A URL_B...  requests to A and to the Bs (round robin) in strict
//	                                 alternation; prints each one's median latency: on a busy
//	                                 machine the ratio of two alternated medians is steadier
//	                                 than the ratio of two rates measured one after the other
var clientCommands = map[string]func(args []string) error{
	"get": cmdGet, "resolve": cmdResolve, "loop": cmdLoop, "bench": cmdBench, "dnsbench": cmdDNSBench, "pair": cmdPair,
}

func clientMain(args []string) int {
	f, ok := clientCommands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "whoami: unknown command %q (get, resolve, loop, bench, dnsbench; none to serve)\n", args[0])
		return 2
	}
	if err := f(args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "whoami:", err)
		return 1
	}
	return 0
}

func httpClient() *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func getOnce(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

func cmdGet(args []string) error {
	if len(args) < 1 {
		return errors.New("get URL [N]")
	}
	n := 1
	if len(args) > 1 {
		var err error
		if n, err = strconv.Atoi(args[1]); err != nil {
			return fmt.Errorf("get: N %q: %w", args[1], err)
		}
	}
	c := httpClient()
	for range n {
		body, err := getOnce(c, args[0])
		if err != nil {
			return err
		}
		fmt.Print(body)
	}
	return nil
}

func cmdResolve(args []string) error {
	if len(args) != 1 {
		return errors.New("resolve NAME")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := (&net.Resolver{PreferGo: true}).LookupHost(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Println(strings.Join(addrs, "\n"))
	return nil
}

func duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("duration %q: want e.g. 5s", s)
	}
	return d, nil
}

func cmdLoop(args []string) error {
	if len(args) != 2 {
		return errors.New("loop URL DURATION")
	}
	d, err := duration(args[1])
	if err != nil {
		return err
	}
	c := httpClient()
	var n, failed int
	first := ""
	for end := time.Now().Add(d); time.Now().Before(end); {
		n++
		if _, err := getOnce(c, args[0]); err != nil {
			failed++
			if first == "" {
				first = err.Error()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Printf("requests=%d failed=%d first_error=%q\n", n, failed, first)
	return nil
}

// run calls f from conc goroutines for d and reports the rate.
func run(d time.Duration, conc int, f func() error) {
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if f() == nil {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("requests=%d seconds=%.2f rps=%.0f failed=%d\n", ok.Load(), secs, float64(ok.Load())/secs, failed.Load())
}

func concurrency(args []string, i int) (int, error) {
	if len(args) <= i {
		return 4, nil
	}
	c, err := strconv.Atoi(args[i])
	if err != nil || c < 1 {
		return 0, fmt.Errorf("concurrency %q", args[i])
	}
	return c, nil
}

func cmdBench(args []string) error {
	if len(args) < 3 {
		return errors.New("bench DURATION C URL...")
	}
	d, err := duration(args[0])
	if err != nil {
		return err
	}
	conc, err := concurrency(args, 1)
	if err != nil {
		return err
	}
	urls := args[2:]
	var next atomic.Uint64
	c := httpClient()
	run(d, conc, func() error {
		_, err := getOnce(c, urls[next.Add(1)%uint64(len(urls))])
		return err
	})
	return nil
}

func cmdDNSBench(args []string) error {
	if len(args) < 2 {
		return errors.New("dnsbench NAME DURATION [C [SERVER]]")
	}
	d, err := duration(args[1])
	if err != nil {
		return err
	}
	conc, err := concurrency(args, 2)
	if err != nil {
		return err
	}
	r := &net.Resolver{PreferGo: true}
	if len(args) > 3 {
		server := args[3]
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, server)
		}
	}
	run(d, conc, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := r.LookupHost(ctx, args[0])
		return err
	})
	return nil
}

func cmdPair(args []string) error {
	if len(args) < 4 {
		return errors.New("pair DURATION C URL_A URL_B...")
	}
	d, err := duration(args[0])
	if err != nil {
		return err
	}
	conc, err := concurrency(args, 1)
	if err != nil {
		return err
	}
	a, bs := args[2], args[3:]
	c := httpClient()
	var mu sync.Mutex
	var la, lb []time.Duration
	var failed atomic.Int64
	var next atomic.Uint64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	timed := func(url string) (time.Duration, bool) {
		t0 := time.Now()
		_, err := getOnce(c, url)
		if err != nil {
			failed.Add(1)
			return 0, false
		}
		return time.Since(t0), true
	}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				x, okA := timed(a)
				y, okB := timed(bs[next.Add(1)%uint64(len(bs))])
				mu.Lock()
				if okA {
					la = append(la, x)
				}
				if okB {
					lb = append(lb, y)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	med := func(xs []time.Duration) time.Duration {
		if len(xs) == 0 {
			return 0
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	fmt.Printf("a_p50_us=%d b_p50_us=%d a_n=%d b_n=%d failed=%d\n", med(la).Microseconds(), med(lb).Microseconds(), len(la), len(lb), failed.Load())
	return nil
}
