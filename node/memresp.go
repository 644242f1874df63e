package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// memResponse captures a handler's answer in memory, so a manager's own worker uses
// the same code path as a remote one without a network round trip.
type memResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (m *memResponse) Header() http.Header { return m.header }
func (m *memResponse) Write(b []byte) (int, error) {
	if m.code == 0 {
		m.code = http.StatusOK
	}
	return m.body.Write(b)
}
func (m *memResponse) WriteHeader(code int) { m.code = code }

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
