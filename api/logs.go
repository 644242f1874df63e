package api

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// LogOptions select the log lines of a service's tasks, as docker logs' flags do.
type LogOptions struct {
	Follow bool
	Tail   int       // > 0: start at the last Tail lines of each task
	Since  time.Time // non-zero: only lines written at or after it
	// Timestamps prefixes each line with the time it was written
	// (LogTimestampFormat) and a space.
	Timestamps bool
	// Details adds the task's attributes (node, service, task) to each line.
	Details bool
}

// LogTimestampFormat is docker's fixed-width RFC 3339 with nanoseconds, so lines
// of several tasks sort as text.
const LogTimestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Query is the options as the logs endpoints take them.
func (o LogOptions) Query() url.Values {
	q := url.Values{}
	q.Set("follow", strconv.FormatBool(o.Follow))
	q.Set("tail", strconv.Itoa(o.Tail))
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if o.Timestamps {
		q.Set("timestamps", "true")
	}
	if o.Details {
		q.Set("details", "true")
	}
	return q
}

// ParseLogOptions reads the options back from a query.
func ParseLogOptions(q url.Values) (LogOptions, error) {
	var o LogOptions
	var err error
	for _, b := range []struct {
		key string
		dst *bool
	}{{"follow", &o.Follow}, {"timestamps", &o.Timestamps}, {"details", &o.Details}} {
		if v := q.Get(b.key); v != "" {
			if *b.dst, err = strconv.ParseBool(v); err != nil {
				return o, fmt.Errorf("%s=%q: not a boolean", b.key, v)
			}
		}
	}
	if v := q.Get("tail"); v != "" {
		if o.Tail, err = strconv.Atoi(v); err != nil || o.Tail < 0 {
			return o, fmt.Errorf("tail=%q: not a number of lines", v)
		}
	}
	if v := q.Get("since"); v != "" {
		if o.Since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return o, fmt.Errorf("since=%q: not an RFC 3339 time", v)
		}
	}
	return o, nil
}
