package api

import (
	"errors"
	"strings"
)

// The error vocabulary shared by server and client. The server wraps these; the
// client turns an error answer back into one of them (node/client's Error.Is), so a
// caller writes errors.Is(err, api.ErrNotFound) whichever side of the wire the error
// came from.
var (
	ErrInvalid        = errors.New("invalid request") // bad input; nothing changed
	ErrNotFound       = errors.New("not found")       // nothing changed
	ErrConflict       = errors.New("conflict")        // name taken or version conflict; nothing changed
	ErrNotLeader      = errors.New("not the leader")  // refused without writing; safe to retry
	ErrNoQuorum       = errors.New("quorum lost")     // managers cannot agree; nothing changed
	ErrForbidden      = errors.New("forbidden")       // the caller may not do this; nothing changed
	ErrBusy           = errors.New("busy")            // at capacity now; try again later or elsewhere
	ErrOutcomeUnknown = errors.New("outcome unknown: the change may or may not have been applied")
)

// Error kinds name the sentinels on the wire.
const (
	ErrKindInvalid   = "invalid"
	ErrKindNotFound  = "not_found"
	ErrKindConflict  = "conflict"
	ErrKindRefused   = "refused"
	ErrKindNoQuorum  = "no_quorum"
	ErrKindForbidden = "forbidden"
	ErrKindBusy      = "busy"
	ErrKindUnknown   = "unknown"
	ErrKindInternal  = "internal"
)

var kindSentinels = map[string]error{
	ErrKindInvalid:   ErrInvalid,
	ErrKindNotFound:  ErrNotFound,
	ErrKindConflict:  ErrConflict,
	ErrKindRefused:   ErrNotLeader,
	ErrKindNoQuorum:  ErrNoQuorum,
	ErrKindForbidden: ErrForbidden,
	ErrKindBusy:      ErrBusy,
	ErrKindUnknown:   ErrOutcomeUnknown,
}

// SentinelOf is the sentinel an error kind stands for (nil for internal errors).
func SentinelOf(kind string) error { return kindSentinels[kind] }

// KindOf is the wire kind of err: the first sentinel it wraps, else internal. The
// outcome-unknown check comes first: such an error may also wrap a refusal it met.
func KindOf(err error) string {
	for _, k := range []string{ErrKindUnknown, ErrKindNoQuorum, ErrKindRefused, ErrKindNotFound, ErrKindConflict, ErrKindForbidden, ErrKindInvalid, ErrKindBusy} {
		if errors.Is(err, kindSentinels[k]) {
			return k
		}
	}
	return ErrKindInternal
}

// HTTPStatus is the status code an error of this kind is answered with.
func HTTPStatus(kind string) int {
	switch kind {
	case ErrKindInvalid:
		return 400
	case ErrKindForbidden:
		return 403
	case ErrKindNotFound:
		return 404
	case ErrKindConflict:
		return 409
	case ErrKindRefused, ErrKindNoQuorum, ErrKindBusy:
		return 503
	case ErrKindUnknown:
		return 504
	}
	return 500
}

// ErrorBodyOf is the answer for err: its kind, and a message that says what an
// unknown outcome guarantees.
func ErrorBodyOf(err error) ErrorBody {
	kind := KindOf(err)
	msg := err.Error()
	if kind == ErrKindUnknown && !strings.Contains(msg, "outcome unknown") {
		msg = "outcome unknown: the change may or may not have been applied: " + msg
	}
	return ErrorBody{Error: msg, Kind: kind}
}
