package api

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The endpoint table on the wire of a session that takes deltas. Every node is
// sent every endpoint, so its size is paid a thousand times over: as objects an
// endpoint took about 190 bytes, as a row about 65. Rows leave out what the
// worker knows already: the service (the row's group), its node's address (from
// the node table it is sent too) and the task's own address when it is that
// one.

// Row is one endpoint as a JSON array: [task, slot, node, addr, ports] where addr
// is "" when it is the node's address and ports is a list of [target, host] (or
// [target, host, "udp"]).
type Row struct {
	TaskID string
	Slot   uint64
	NodeID string
	Addr   string
	Ports  []PortBinding
}

// ServiceRows is a service's part of the table as rows: its header, and the rows
// added or changed (all of them in a whole answer), and in a delta the task IDs
// that left.
type ServiceRows struct {
	Service      string       `json:"service"`
	VIP          string       `json:"vip,omitempty"`
	EndpointMode EndpointMode `json:"endpoint_mode"`
	Ports        []PortConfig `json:"ports,omitempty"`
	Rows         []Row        `json:"rows,omitempty"`
	Gone         []string     `json:"gone,omitempty"`
}

// RowOf is an endpoint's row.
func RowOf(e Endpoint) Row {
	r := Row{TaskID: e.TaskID, Slot: e.Slot, NodeID: e.NodeID, Ports: e.Ports}
	if e.Addr != e.NodeIP {
		r.Addr = e.Addr
	}
	return r
}

// Endpoint is the row as an endpoint of service, on a node at nodeIP.
func (r Row) Endpoint(service, nodeIP string) Endpoint {
	e := Endpoint{Service: service, TaskID: r.TaskID, Slot: r.Slot, NodeID: r.NodeID, NodeIP: nodeIP, Addr: r.Addr, Ports: r.Ports}
	if e.Addr == "" {
		e.Addr = nodeIP
	}
	return e
}

// MarshalJSON writes the row as its array.
func (r Row) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 64+len(r.TaskID)+len(r.NodeID)+len(r.Addr))
	b = append(b, '[')
	b = appendString(b, r.TaskID)
	b = append(b, ',')
	b = strconv.AppendUint(b, r.Slot, 10)
	b = append(b, ',')
	b = appendString(b, r.NodeID)
	b = append(b, ',')
	b = appendString(b, r.Addr)
	b = append(b, ",["...)
	for i, p := range r.Ports {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(p.TargetPort), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(p.HostPort), 10)
		if p.Protocol != "tcp" {
			b = append(b, ',')
			b = appendString(b, p.Protocol)
		}
		b = append(b, ']')
	}
	return append(b, "]]"...), nil
}

// appendString writes s as a JSON string: IDs and addresses as they are, anything
// else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// UnmarshalJSON reads the row's array.
func (r *Row) UnmarshalJSON(b []byte) error {
	var f []json.RawMessage
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("endpoint row: %w", err)
	}
	if len(f) != 5 {
		return fmt.Errorf("endpoint row of %d fields, want 5", len(f))
	}
	var ports [][]json.RawMessage
	for i, dst := range []any{&r.TaskID, &r.Slot, &r.NodeID, &r.Addr, &ports} {
		if err := json.Unmarshal(f[i], dst); err != nil {
			return fmt.Errorf("endpoint row field %d: %w", i, err)
		}
	}
	r.Ports = nil
	for _, p := range ports {
		if len(p) < 2 || len(p) > 3 {
			return fmt.Errorf("endpoint row port of %d fields", len(p))
		}
		pb := PortBinding{Protocol: "tcp"}
		if err := json.Unmarshal(p[0], &pb.TargetPort); err != nil {
			return fmt.Errorf("endpoint row port: %w", err)
		}
		if err := json.Unmarshal(p[1], &pb.HostPort); err != nil {
			return fmt.Errorf("endpoint row port: %w", err)
		}
		if len(p) == 3 {
			if err := json.Unmarshal(p[2], &pb.Protocol); err != nil {
				return fmt.Errorf("endpoint row port: %w", err)
			}
		}
		r.Ports = append(r.Ports, pb)
	}
	return nil
}
