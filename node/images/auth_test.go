package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCredentialsFor(t *testing.T) {
	write := func(t *testing.T, cfg string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	const logins = `{"auths": {
		"127.67.0.100:5001": {"auth": "YWxpY2U6czNjcjN0"},
		"https://index.docker.io/v1/": {"auth": "Ym9iOmh1Yg=="},
		"http://reg.example:5000/v2/": {"username": "carol", "password": "pw"}}}`
	for _, tc := range []struct {
		name, cfg, image string
		user, pass       string
		found            bool
		err              string
	}{
		{"inline login", logins, "127.67.0.100:5001/app:v1", "alice", "s3cr3t", true, ""},
		{"docker hub key", logins, "swarmlet/whoami:test", "bob", "hub", true, ""},
		{"scheme and path in the key", logins, "reg.example:5000/x/y", "carol", "pw", true, ""},
		{"another registry", logins, "127.67.0.100:5002/app:v1", "", "", false, ""},
		{"credential helper", `{"auths": {}, "credsStore": "desktop"}`, "r.example/a:1", "", "", false, "credential helper \"docker-credential-desktop\""},
		{"not base64", `{"auths": {"r.example": {"auth": "%%%"}}}`, "r.example/a:1", "", "", false, "not base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, found, err := CredentialsFor(write(t, tc.cfg), tc.image)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil || found != tc.found || a.Username != tc.user || a.Password != tc.pass {
				t.Fatalf("got %+v found=%v err=%v", a, found, err)
			}
			if found {
				back, err := DecodeAuth(EncodeAuth(a))
				if err != nil || back != a {
					t.Fatalf("X-Registry-Auth round trip: %+v %v", back, err)
				}
			}
		})
	}
	if _, found, err := CredentialsFor(t.TempDir(), "r.example/a"); found || err != nil {
		t.Fatalf("no config.json: found=%v err=%v", found, err)
	}
}

func TestClassifyPull(t *testing.T) {
	for msg, want := range map[string]pullClass{
		"manifest for r:5000/a:nope not found: manifest unknown: manifest unknown":                    pullNotFound,
		"pull access denied for myapp, repository does not exist or may require 'docker login'":       pullDenied,
		`Head "http://r:5000/v2/a/manifests/v1": no basic auth credentials`:                           pullDenied,
		"unauthorized: authentication required":                                                       pullDenied,
		`Get "http://127.67.0.9:5999/v2/": dial tcp 127.67.0.9:5999: connect: connection refused`:     pullUnreachable,
		`Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host`: pullUnreachable,
		"received unexpected HTTP status: 503 Service Unavailable":                                    pullTransient,
		"error pulling image configuration: download failed after attempts=6: unexpected EOF":         pullTransient,
		"toomanyrequests: You have reached your pull rate limit":                                      pullTransient,
	} {
		if got := classifyPull(errString(msg)); got != want {
			t.Errorf("%q: %s, want %s", msg, got, want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1kB", 33_012_345: "33MB", 1_500_000: "1.5MB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("%d: %s, want %s", n, got, want)
		}
	}
}
