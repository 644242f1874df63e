package authn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/pki"
)

// RoleOperator is the role of a person or script using the API (pki.RoleOperator).
const RoleOperator = pki.RoleOperator

// Caller is who a request comes from.
type Caller struct {
	Name string       // node ID, operator name, or "" when anonymous
	Role api.NodeRole // manager, worker, operator, or "" when anonymous
	// Socket: the operator on this node's unix socket.
	Socket bool
}

// Anonymous is a TLS client without a certificate: only the join endpoint admits it.
func (c Caller) Anonymous() bool { return c.Role == "" }

// Node reports whether the caller is a cluster node (manager or worker).
func (c Caller) Node() bool { return c.Role == api.RoleManager || c.Role == api.RoleWorker }

func (c Caller) String() string {
	switch {
	case c.Socket:
		return "operator on the local socket"
	case c.Anonymous():
		return "anonymous client"
	}
	return string(c.Role) + " " + c.Name
}

// Header carries the original caller on a request a manager forwards. The callee
// trusts it only when the TLS peer is a manager (the API decides that).
const Header = "X-Swarmlet-Caller"

// Encode is the header value for c.
func (c Caller) Encode() string {
	if c.Socket {
		return string(RoleOperator) + "/socket"
	}
	return string(c.Role) + "/" + c.Name
}

// Decode reads a header value written by Encode.
func Decode(v string) (Caller, error) {
	role, name, ok := strings.Cut(v, "/")
	if !ok {
		return Caller{}, fmt.Errorf("malformed %s header", Header)
	}
	switch api.NodeRole(role) {
	case RoleOperator:
		if name == "socket" {
			return Caller{Name: "socket", Role: RoleOperator, Socket: true}, nil
		}
	case api.RoleManager, api.RoleWorker:
		if err := api.ValidateID(name); err != nil {
			return Caller{}, fmt.Errorf("%s header: %v", Header, err)
		}
	case "":
		return Caller{}, nil
	default:
		return Caller{}, fmt.Errorf("%s header names unknown role %.16q", Header, role)
	}
	if name == "" || len(name) > 64 {
		return Caller{}, fmt.Errorf("%s header: bad name", Header)
	}
	return Caller{Name: name, Role: api.NodeRole(role)}, nil
}

// FromTLS is the caller a verified TLS connection shows; anonymous when it showed no
// certificate (the join handshake).
func FromTLS(cs *tls.ConnectionState) (Caller, error) {
	if len(cs.PeerCertificates) == 0 {
		return Caller{}, nil
	}
	id, ok := pki.PeerIdentity(*cs)
	if !ok {
		return Caller{}, fmt.Errorf("peer certificate carries no swarmlet identity: %w", api.ErrForbidden)
	}
	return Caller{Name: id.NodeID, Role: id.Role}, nil
}

type socketKey struct{}

// MarkSocket is an http.Server ConnContext for the unix socket's server: requests
// on it come from the operator.
func MarkSocket(ctx context.Context) context.Context {
	return context.WithValue(ctx, socketKey{}, true)
}

// OnSocket reports whether r arrived on the unix socket.
func OnSocket(r *http.Request) bool { v, _ := r.Context().Value(socketKey{}).(bool); return v }

type callerKey struct{}

// With stores the caller the API identified, for the forwarding code to vouch for.
func With(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// From is the caller stored by With.
func From(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}
