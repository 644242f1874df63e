package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

var eventFilterKeys = []string{"type", "action", "name", "id", "service", "node"}

// eventFilters reads --filter as docker does, and also takes several K=V in one
// flag joined by commas (--filter type=service,name=web).
func eventFilters(raw []string) (filters, error) {
	var split []string
	for _, r := range raw {
		parts := strings.Split(r, ",")
		all := true
		for _, p := range parts {
			all = all && strings.Contains(p, "=")
		}
		if all {
			split = append(split, parts...)
		} else {
			split = append(split, r)
		}
	}
	f, err := parseFilters(split, eventFilterKeys)
	if err != nil {
		return nil, err
	}
	return f, f.checkValues("type", string(api.EventService), string(api.EventTask), string(api.EventNode), string(api.EventLeader), string(api.EventCluster),
		string(api.EventSecret), string(api.EventConfig))
}

func eventMatch(f filters, e api.Event) bool {
	return f.match(func(k, v string) bool {
		switch k {
		case "type":
			return string(e.Type) == strings.ToLower(v)
		case "action":
			return e.Action == v
		case "name":
			// A service's name also selects its tasks' events (web.1, web.2...).
			return e.Name == v || strings.HasPrefix(e.Name, v+".") || e.Attributes["service"] == v
		case "id":
			return idMatch(e.ObjectID, v)
		case "service":
			return (e.Type == api.EventService && (e.Name == v || idMatch(e.ObjectID, v))) || e.Attributes["service"] == v || idMatch(e.Attributes["service_id"], v)
		case "node":
			return (e.Type == api.EventNode && (e.Name == v || idMatch(e.ObjectID, v))) || e.Attributes["node"] == v
		}
		return false
	})
}

// eventLine is docker's shape: TIME TYPE ACTION OBJECT (attributes), with the
// event's ID first among them, which is what --since resumes from.
func eventLine(e api.Event) string {
	ts := "-"
	if !e.Time.IsZero() {
		ts = e.Time.UTC().Format(api.LogTimestampFormat)
	}
	attrs := []string{"event=" + strconv.FormatUint(e.ID, 10)}
	if e.Name != "" {
		attrs = append(attrs, "name="+e.Name)
	}
	keys := make([]string, 0, len(e.Attributes))
	for k := range e.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k+"="+e.Attributes[k])
	}
	obj := e.ObjectID
	if obj == "" {
		obj = "-"
	}
	return fmt.Sprintf("%s %s %s %s (%s)", ts, e.Type, e.Action, obj, strings.Join(attrs, ", "))
}

func newEventsCmd() *cobra.Command {
	var (
		since  string
		raw    []string
		format string
		noWait bool
	)
	c := &cobra.Command{
		Use:   "events [--since ID] [--filter K=V]... [--format json|TEMPLATE]",
		Short: "Stream the cluster's events (services, tasks, nodes, leaders), resumable by event ID",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f, err := eventFilters(raw)
			if err != nil {
				return err
			}
			var p parsedFormat
			if format != "" && format != "json" {
				if p, err = parseFormat(format, "", api.Event{}); err != nil {
					return err
				}
			}
			var from *uint64
			if since != "" {
				n, err := strconv.ParseUint(since, 10, 64)
				if err != nil {
					return fmt.Errorf("invalid --since %q: use an event ID (0: everything the log keeps)", since)
				}
				from = &n
			}
			cl, err := client.New(g.host, client.Options{Timeout: -1})
			if err != nil {
				return err
			}
			ctx, cancel := cmdContext()
			defer cancel()
			out := c.OutOrStdout()
			print := func(e api.Event) error {
				if !eventMatch(f, e) {
					return nil
				}
				return printEvent(out, format, p, e)
			}
			return followEvents(ctx, cl, from, !noWait, print, c.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&since, "since", "", "start after this event ID (0: everything the log keeps; default: from now)")
	c.Flags().StringArrayVarP(&raw, "filter", "f", nil, "filter events: KEY=VALUE, one of "+strings.Join(eventFilterKeys, ", ")+" (repeat, or join with commas)")
	c.Flags().StringVar(&format, "format", "", "json (one object per line) or a Go template (e.g. '{{.ID}} {{.Type}} {{.Action}} {{.Name}}')")
	c.Flags().BoolVar(&noWait, "no-follow", false, "stop at the end of the log instead of waiting for new events")
	return c
}

func printEvent(w io.Writer, format string, p parsedFormat, e api.Event) error {
	switch {
	case format == "json":
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case p.tmpl != nil:
		var b bytes.Buffer
		if err := p.tmpl.Execute(&b, e); err != nil {
			return fmt.Errorf("--format: %v", strings.TrimPrefix(err.Error(), "template: "))
		}
		_, err := fmt.Fprintln(w, b.String())
		return err
	}
	_, err := fmt.Fprintln(w, eventLine(e))
	return err
}

// followEvents keeps the stream going across leader changes and lost
// connections: each reconnect resumes after the last event received, so nothing
// is missed or repeated. It stops at ^C, on a refusal that retrying cannot fix
// (events no longer kept), or at the end of the log without follow.
func followEvents(ctx context.Context, cl *client.Client, from *uint64, follow bool, fn func(api.Event) error, errOut io.Writer) error {
	backoff := 100 * time.Millisecond
	var lastErr error
	quietUntil := time.Now().Add(10 * time.Second)
	for {
		last, err := cl.Events(ctx, from, follow, fn)
		if ctx.Err() != nil {
			return nil
		}
		if last != nil && (from == nil || *last != *from) {
			backoff = 100 * time.Millisecond // it moved: the next failure is news
			quietUntil = time.Now().Add(10 * time.Second)
		}
		from = last
		var apiErr *client.Error
		switch {
		case err == nil && !follow:
			return nil
		case errors.As(err, &apiErr) && (errors.Is(err, api.ErrInvalid) || errors.Is(err, api.ErrForbidden)):
			return err
		case err != nil && !errors.Is(err, client.ErrUnreachable) && apiErr == nil:
			return err // fn failed: a bad template, a closed pipe
		}
		if err != nil && time.Now().After(quietUntil) && (lastErr == nil || err.Error() != lastErr.Error()) {
			where := "now"
			if from != nil {
				where = "event " + strconv.FormatUint(*from, 10)
			}
			fmt.Fprintf(errOut, "events: %v; retrying from %s\n", err, where)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
