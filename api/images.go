package api

import (
	"fmt"
	"regexp"
)

// Images: how a service's image is pinned, and the wire types of the image endpoints.
//
// A spec's Image is what the user wrote (name:tag). When a service is created, or
// its image changes, the manager pins it: ImageDigest is the registry's manifest
// digest when a registry answers for the name, and ImageID the image's config
// digest (what the engine calls the image ID) from the registry or, when no
// registry answers, from the nodes that hold an image of that name. Tasks copy the
// spec, so every task of one spec version runs the same bits on every node; a tag
// moved later changes nothing until the image is updated or the update is forced.

// RegistryAuthHeader carries registry credentials on service create and update,
// as docker's API does: base64url of JSON {"username","password","serveraddress"}.
// The manager stores them apart from the service; no read ever shows them.
const RegistryAuthHeader = "X-Registry-Auth"

// Headers of an image archive answer (node to node): what the sending node
// announces, which the receiver checks the archive against.
const (
	ImageIDHeader   = "X-Swarmlet-Image-Id"
	ImageSizeHeader = "X-Swarmlet-Image-Size"
)

// ResolveImage modes (the ?resolve_image= of create and update, docker's names):
// always asks the registry, changed only when the image differs from the
// current spec's (the default of update), never keeps the name as given.
const (
	ResolveAlways  = "always"
	ResolveChanged = "changed"
	ResolveNever   = "never"
)

// ImageInfo is one image of one node's engine.
type ImageInfo struct {
	ID      string   `json:"id"` // sha256:... (the config digest)
	Tags    []string `json:"tags,omitempty"`
	Digests []string `json:"digests,omitempty"` // name@sha256:... as registries know it
	Size    int64    `json:"size"`
}

// ImagePruneReport says what an image prune removed and what it kept in use.
type ImagePruneReport struct {
	Removed   []ImageInfo `json:"removed"`
	InUse     int         `json:"in_use"`    // images this node fetched that tasks or containers still use
	Reclaimed int64       `json:"reclaimed"` // bytes (as the engine counts image sizes)
}

// ServiceCreateAnswer is a created (or updated) service and what the manager
// warns about, such as an image it could not pin.
type ServiceCreateAnswer struct {
	Service
	Warnings []string `json:"warnings,omitempty"`
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// ValidateDigest checks a sha256:<64 hex> digest or image ID.
func ValidateDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("invalid digest %q: expected sha256: and 64 hex digits", d)
	}
	return nil
}

func (s *ServiceSpec) validateImagePin() error {
	for _, d := range []string{s.ImageDigest, s.ImageID} {
		if d != "" {
			if err := ValidateDigest(d); err != nil {
				return fmt.Errorf("image pin: %w", err)
			}
		}
	}
	return nil
}
