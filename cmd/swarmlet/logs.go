package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// parseSince reads --since as docker does: an RFC 3339 time (or date), a Unix
// timestamp with optional fraction, or a duration back from now (10m, 1h30m).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("invalid --since %q: a duration back from now must be positive", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if sec, frac, _ := strings.Cut(s, "."); sec != "" {
		if n, err := strconv.ParseInt(sec, 10, 64); err == nil {
			var ns int64
			if frac != "" {
				f, err := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
				if err != nil {
					return time.Time{}, fmt.Errorf("invalid --since %q: use a time (2026-01-02T15:04:05Z), a Unix timestamp or a duration (10m)", s)
				}
				ns = f
			}
			return time.Unix(n, ns), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid --since %q: use a time (2026-01-02T15:04:05Z), a Unix timestamp or a duration (10m)", s)
}

func newServiceLogs() *cobra.Command {
	var opt api.LogOptions
	var since string
	c := &cobra.Command{
		Use: "logs [--follow] [--tail N] [--since T] [--timestamps] [--details] SERVICE", Short: "Show a service's task output", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var err error
			if opt.Since, err = parseSince(since, time.Now()); err != nil {
				return err
			}
			if opt.Tail < 0 {
				return fmt.Errorf("invalid --tail %d: must be 0 (all) or more", opt.Tail)
			}
			cl, err := client.New(g.host, client.Options{Timeout: -1})
			if err != nil {
				return err
			}
			ctx, cancel := cmdContext()
			defer cancel()
			return cl.Logs(ctx, args[0], opt, c.OutOrStdout())
		},
	}
	c.Flags().BoolVarP(&opt.Follow, "follow", "f", false, "keep following new output")
	c.Flags().IntVarP(&opt.Tail, "tail", "n", 0, "only the last N lines of each task (0: all)")
	c.Flags().StringVar(&since, "since", "", "only lines since a time (2026-01-02T15:04:05Z), a Unix timestamp or a duration back (10m)")
	c.Flags().BoolVarP(&opt.Timestamps, "timestamps", "t", false, "start each line with the time it was written")
	c.Flags().BoolVar(&opt.Details, "details", false, "add each task's node, service and task IDs to its lines")
	return c
}
