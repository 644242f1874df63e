// Command whoami is the project's own test workload: a tiny static HTTP server that
// says which task, slot, node and service it is, so tests can tell replicas apart.
// It is built FROM scratch into swarmlet/whoami:test, because no registry is reachable.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		// For a Docker HEALTHCHECK in an image with no shell and no curl:
		// CMD ["/whoami", "healthcheck"] asks the server in the same container.
		os.Exit(healthcheck())
	}
	if len(os.Args) > 1 {
		os.Exit(clientMain(os.Args[1:])) // client.go: for tests inside a container
	}
	// Under the process engine PORT is a host port on the node address; several
	// nodes may share one machine (127.0.0.1, 127.0.0.2, ...), so bind that address
	// alone. In a container PORT is unset and the target port is 80.
	addr := ":80"
	if p := os.Getenv("PORT"); p != "" {
		addr = net.JoinHostPort(os.Getenv("SWARMLET_ADDR"), p)
	}
	host, _ := os.Hostname()
	logger := slog.New(slog.NewTextHandler(os.Stdout, nil)).With("component", "whoami")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "task=%s slot=%s node=%s service=%s host=%s version=%s\n",
			os.Getenv("SWARMLET_TASK_ID"), os.Getenv("SWARMLET_SLOT"),
			os.Getenv("SWARMLET_NODE_ID"), os.Getenv("SWARMLET_SERVICE"), host, os.Getenv("WHOAMI_VERSION"))
	})
	// WHOAMI_HEALTH=fail makes the health endpoint fail: a version whose health
	// check fails, for rollout tests.
	// POST /health/fail makes it fail from then on: a task turning unhealthy
	// while it runs, for tests of how soon it leaves the balancers.
	var failHealth atomic.Bool
	failHealth.Store(os.Getenv("WHOAMI_HEALTH") == "fail")
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if failHealth.Load() {
			http.Error(w, "unhealthy (WHOAMI_HEALTH=fail or POST /health/fail)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /health/fail", func(w http.ResponseWriter, r *http.Request) {
		failHealth.Store(true)
		logger.Info("health check set to fail")
		fmt.Fprintln(w, "health fails from now on")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	// In a container this runs as PID 1, where the kernel ignores SIGTERM unless a
	// handler is installed: handle it, or every stop would wait for the kill timeout.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("listening", "addr", addr, "task", os.Getenv("SWARMLET_TASK_ID"))

	select {
	case err := <-errc:
		logger.Error("serve", "err", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("shutdown", "err", err)
		os.Exit(1)
	}
	logger.Info("stopped")
}

// healthcheck asks this container's server for /health: 0 when it answers 2xx.
func healthcheck() int {
	port := os.Getenv("PORT")
	if port == "" {
		port = "80"
	}
	host := os.Getenv("SWARMLET_ADDR")
	if os.Getenv("PORT") == "" || host == "" {
		host = "127.0.0.1"
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + net.JoinHostPort(host, port) + "/health")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}
