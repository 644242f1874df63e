package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// newProxyCmd is kubectl proxy's shape: the API and the dashboard on a local
// plain-HTTP port, authenticated as the user running it (the root-only socket, or
// TCP with their operator certificate). The API itself never answers plain TCP, so
// a browser reaches /ui/ this way without holding a client certificate.
func newProxyCmd() *cobra.Command {
	var listen string
	c := &cobra.Command{
		Use: "proxy [--listen 127.0.0.1:8001]", Short: "Serve the API and the dashboard on a local port, as you", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return fmt.Errorf("invalid --listen %q: %v", listen, err)
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("invalid --listen %q: the proxy carries your authority, so it listens on a loopback address only", listen)
			}
			cl, err := apiClient()
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			ctx, cancel := cmdContext()
			defer cancel()
			srv := &http.Server{Handler: cl.ReverseProxy(), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); _ = srv.Close() }()
			fmt.Fprintf(c.OutOrStdout(), "Serving the API on http://%s/ and the dashboard on http://%s/ui/ (^C to stop)\n", ln.Addr(), ln.Addr())
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8001", "loopback address and port to serve on")
	return c
}
