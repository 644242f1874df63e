package images

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Registry credentials travel as docker's X-Registry-Auth: base64url of a JSON
// AuthConfig. The CLI builds it from the docker client's config; nodes hand it to
// their engine's pull unchanged; the manager decodes it to resolve digests.

// AuthConfig is the part of docker's AuthConfig swarmlet uses.
type AuthConfig struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
}

// EncodeAuth is the X-Registry-Auth form of a.
func EncodeAuth(a AuthConfig) string {
	b, _ := json.Marshal(a)
	return base64.URLEncoding.EncodeToString(b)
}

// DecodeAuth reads an X-Registry-Auth value ("" is no credentials). Docker
// clients send base64url; some send standard base64; both are accepted.
func DecodeAuth(s string) (AuthConfig, error) {
	var a AuthConfig
	if s == "" {
		return a, nil
	}
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.StdEncoding.DecodeString(s); err != nil {
			return a, errors.New("registry credentials: not base64")
		}
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, errors.New("registry credentials: not an auth config")
	}
	return a, nil
}

// DockerConfigDir is where the docker client keeps config.json: $DOCKER_CONFIG,
// else ~/.docker.
func DockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker")
}

// CredentialsFor reads the docker client's stored login for the registry an
// image names (docker login writes it to config.json's "auths", as base64 of
// user:password). found is false when there is none. Credential helpers
// (credsStore, credHelpers) are not run: when one is configured for the registry
// and config.json holds no inline login, the error says so, with the way out.
func CredentialsFor(configDir, image string) (a AuthConfig, found bool, err error) {
	reg := registryOf(image)
	path := filepath.Join(configDir, "config.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("read docker client config: %w", err)
	}
	var cf struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
		CredsStore  string            `json:"credsStore"`
		CredHelpers map[string]string `json:"credHelpers"`
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return a, false, fmt.Errorf("read docker client config %s: %w", path, err)
	}
	for key, e := range cf.Auths {
		if normalizeRegistry(key) != reg {
			continue
		}
		a = AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, ServerAddress: reg}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return AuthConfig{}, false, fmt.Errorf("docker client config %s: the login for %s is not base64", path, key)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return AuthConfig{}, false, fmt.Errorf("docker client config %s: the login for %s is not user:password", path, key)
			}
			a.Username, a.Password = user, pass
		}
		if a.Username != "" || a.IdentityToken != "" {
			return a, true, nil
		}
	}
	if h := cf.CredHelpers[reg]; h != "" || cf.CredsStore != "" {
		if h == "" {
			h = cf.CredsStore
		}
		return a, false, fmt.Errorf("the docker client keeps the login for %s in the credential helper %q, which swarmlet does not run: log in with a plain config (DOCKER_CONFIG=DIR docker login %s, after removing credsStore there) and pass DOCKER_CONFIG=DIR", reg, "docker-credential-"+h, reg)
	}
	return a, false, nil
}

// normalizeRegistry turns a config.json auths key (https://index.docker.io/v1/,
// http://host:5000, host:5000/v2/) into the registry host registryOf names.
func normalizeRegistry(key string) string {
	k := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	k, _, _ = strings.Cut(k, "/")
	switch k {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return k
}
