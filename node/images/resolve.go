package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/swarmlet/swarmlet/node/client"
)

// Pin is what a registry says a name stands for now.
type Pin struct {
	Digest string // the manifest (or index) digest
	// ID is the image's config digest when the digest names one image; empty for a
	// multi-platform index, whose image differs by node platform.
	ID string
}

// ResolveError is a resolution the registry refused or that no registry answered.
type ResolveError struct {
	Registry string
	Class    pullClass
	Err      error
}

func (e *ResolveError) Error() string {
	switch e.Class {
	case pullUnreachable:
		return fmt.Sprintf("no registry answered at %s: %v", e.Registry, e.Err)
	case pullNotFound:
		return fmt.Sprintf("registry %s has no such image: %v", e.Registry, e.Err)
	case pullDenied:
		return fmt.Sprintf("registry %s refused access: %v", e.Registry, e.Err)
	}
	return fmt.Sprintf("registry %s: %v", e.Registry, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// Unreachable says no registry answered (as opposed to one that refused).
func (e *ResolveError) Unreachable() bool { return e.Class == pullUnreachable }

// ParseReference parses an image reference as registries know it. Registries
// on loopback addresses or localhost are spoken to in plain HTTP, as Docker does
// (it treats 127.0.0.0/8 as insecure by default).
func ParseReference(image string) (name.Reference, error) {
	var opts []name.Option
	if insecureRegistry(registryOf(image)) {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(image, opts...)
}

func insecureRegistry(reg string) bool {
	host := reg
	if h, _, err := net.SplitHostPort(reg); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Resolve asks image's registry what it names now, with credentials auth
// (X-Registry-Auth, "" for anonymous). Connections leave from localAddr (the
// node's advertise address) when given. A failure is a *ResolveError.
func Resolve(ctx context.Context, image, auth, localAddr string) (Pin, error) {
	ref, err := ParseReference(image)
	if err != nil {
		return Pin{}, fmt.Errorf("image %q: %w", image, err)
	}
	reg := ref.Context().RegistryStr()
	a, err := DecodeAuth(auth)
	if err != nil {
		return Pin{}, err
	}
	var authr authn.Authenticator = authn.Anonymous
	if a.Username != "" || a.IdentityToken != "" || a.RegistryToken != "" {
		authr = authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password,
			IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken})
	}
	d := client.Dialer(localAddr, 3*time.Second)
	tr := &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: 5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithAuth(authr), remote.WithTransport(tr),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	if err != nil {
		return Pin{}, &ResolveError{Registry: reg, Class: classifyResolve(err), Err: err}
	}
	pin := Pin{Digest: desc.Digest.String()}
	if desc.MediaType.IsIndex() {
		return pin, nil
	}
	img, err := desc.Image()
	if err != nil {
		return pin, nil // the digest alone still pins
	}
	if cfg, err := img.ConfigName(); err == nil {
		pin.ID = cfg.String()
	}
	return pin, nil
}

func classifyResolve(err error) pullClass {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return pullDenied
		case http.StatusNotFound:
			return pullNotFound
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return pullDenied
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return pullNotFound
			}
		}
		return pullTransient
	}
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "dial tcp") {
		return pullUnreachable
	}
	return classifyPull(err)
}
