package api

import (
	"strings"
	"testing"
)

func TestValidateSecretName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"db", true}, {"DB_password-2.txt", true}, {"a", true}, {strings.Repeat("a", 64), true},
		{"", false}, {"-db", false}, {"db.", false}, {"a/b", false}, {"db@1", false}, {"a b", false}, {strings.Repeat("a", 65), false},
	} {
		if err := ValidateSecretName(KindSecret, tc.name); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if err := ValidateSecretData(KindConfig, make([]byte, MaxSecretSize)); err != nil {
		t.Errorf("500 KB refused: %v", err)
	}
	for _, d := range [][]byte{nil, make([]byte, MaxSecretSize+1)} {
		if err := ValidateSecretData(KindSecret, d); err == nil {
			t.Errorf("%d bytes accepted", len(d))
		}
	}
}

// Normalize fills docker's defaults; Validate refuses what cannot be a file.
func TestSpecFiles(t *testing.T) {
	s := ServiceSpec{Name: "web", Image: "x", Secrets: []SecretRef{{Source: "db"}, {Source: "tls", Target: "/etc/tls/key"}},
		Configs: []SecretRef{{Source: "app.conf"}, {Source: "b", Target: "etc/b.conf", Mode: 0o600}}}
	s.Normalize()
	want := []struct {
		got       SecretRef
		path, rel string
		mode      uint32
	}{
		{s.Secrets[0], "/run/secrets/db", "db", 0o444},
		{s.Secrets[1], "/etc/tls/key", "etc/tls/key", 0o444},
		{s.Configs[0], "/app.conf", "app.conf", 0o444},
		{s.Configs[1], "/etc/b.conf", "etc/b.conf", 0o600},
	}
	for _, w := range want {
		if w.got.Path() != w.path || w.got.FilePath() != w.rel || uint32(w.got.Mode) != w.mode {
			t.Errorf("%s: path %s file %s mode %o; want %s %s %o", w.got.Source, w.got.Path(), w.got.FilePath(), w.got.Mode, w.path, w.rel, w.mode)
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*ServiceSpec)
		want string
	}{
		{"bad source", func(s *ServiceSpec) { s.Secrets[0].Source = "a/b" }, "invalid secret name"},
		{"dot-dot", func(s *ServiceSpec) { s.Secrets[0].Target = "../x" }, "invalid target"},
		{"unclean", func(s *ServiceSpec) { s.Configs[0].Target = "/etc//x" }, "invalid target"},
		{"the secrets dir itself", func(s *ServiceSpec) { s.Secrets[0].Target = "/run/secrets" }, "name a file"},
		{"two at one path", func(s *ServiceSpec) { s.Configs[0].Target = "/run/secrets/db" }, "both target /run/secrets/db"},
		{"bad uid", func(s *ServiceSpec) { s.Secrets[0].UID = "root" }, "invalid uid"},
		{"negative gid", func(s *ServiceSpec) { s.Secrets[0].GID = "-1" }, "invalid gid"},
		{"setuid mode", func(s *ServiceSpec) { s.Secrets[0].Mode = 0o4755 }, "invalid mode 04755"},
	} {
		sp := s.Clone()
		tc.edit(&sp)
		if err := sp.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if c := s.Clone(); &c.Secrets[0] == &s.Secrets[0] {
		t.Fatal("Clone shares the secrets list")
	}
}
