package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/swarmlet/swarmlet/api"
)

// EventCursorHeader is httpapi's: the ID after which a stream's events follow.
const EventCursorHeader = "X-Swarmlet-Event-Cursor"

// Events streams the event log to fn: the events after since (nil: from now),
// then new ones while follow holds, until ctx ends, fn fails or the stream ends
// (the leader serving it stepped down). It returns where to resume with nothing
// missed or repeated: the ID of the last event handed to fn, or where the stream
// started; nil if since was nil and no stream started.
func (c *Client) Events(ctx context.Context, since *uint64, follow bool, fn func(api.Event) error) (*uint64, error) {
	path := "/v1/events?follow=" + strconv.FormatBool(follow)
	var last *uint64
	if since != nil {
		path += "&since=" + strconv.FormatUint(*since, 10)
		v := *since
		last = &v
	}
	var streamErr error
	_, err := c.Do(ctx, http.MethodGet, path, nil, streamFunc(func(resp *http.Response) {
		if v, err := strconv.ParseUint(resp.Header.Get(EventCursorHeader), 10, 64); err == nil && since == nil {
			last = &v
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			var line struct {
				api.Event
				Error string `json:"error"`
				Kind  string `json:"kind"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				streamErr = fmt.Errorf("decode event: %w", err)
				return
			}
			if line.Error != "" {
				streamErr = &Error{Status: http.StatusOK, Kind: line.Kind, Msg: line.Error}
				return
			}
			if err := fn(line.Event); err != nil {
				streamErr = err
				return
			}
			id := line.ID
			last = &id
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			streamErr = fmt.Errorf("%w: event stream broke: %v", ErrUnreachable, err)
		}
	}))
	if err != nil {
		return last, err
	}
	return last, streamErr
}

// streamFunc, as Do's out, is handed the response whole (headers and body).
type streamFunc func(*http.Response)
