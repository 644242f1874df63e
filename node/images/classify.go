package images

import (
	"strings"
)

// What a failed pull means for what to do next.
type pullClass int

const (
	pullTransient   pullClass = iota // a registry or network hiccup: retry with backoff
	pullNotFound                     // the registry answered: no such name or tag
	pullDenied                       // the registry answered: credentials missing or refused
	pullUnreachable                  // no registry answered at all
)

func (c pullClass) String() string {
	return [...]string{"transient", "not found", "denied", "unreachable"}[c]
}

// refused says the registry answered and said no: retrying will not help.
func (c pullClass) refused() bool { return c == pullNotFound || c == pullDenied }

// classifyPull reads a pull error in the words registries and Docker use; Docker
// hands most of them over as text inside its progress stream, so text is all
// there is to go by.
func classifyPull(err error) pullClass {
	msg := strings.ToLower(err.Error())
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(msg, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("unauthorized", "authentication required", "no basic auth credentials", "access to the resource is denied",
		"pull access denied", "incorrect username or password", "denied:", "forbidden"):
		return pullDenied
	case has("manifest unknown", "name unknown", "not found", "repository does not exist", "no such image", "invalid reference format"):
		return pullNotFound
	case has("connection refused", "no such host", "network is unreachable", "no route to host",
		"server gave http response to https client", "dial tcp", "dial udp", "lookup "):
		return pullUnreachable
	default:
		return pullTransient // 5xx, resets, EOF, timeouts mid-transfer, too many requests
	}
}
