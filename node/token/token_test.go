package token

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := Make("cluster-1", "s3cret")
	for _, tc := range []struct {
		tok, digest, secret string
		ok                  bool
	}{
		{good, ClusterDigest("cluster-1"), "s3cret", true},
		{"", "", "", false},
		{"SWLT-1-abc", "", "", false},
		{"SWLT-2-abc-def", "", "", false},
		{"XXXX-1-abc-def", "", "", false},
		{"SWLT-1--def", "", "", false},
		{"SWLT-1-abc-", "", "", false},
		{"SWLT-1-abc-def-ghi", "", "", false},
	} {
		d, s, err := Parse(tc.tok)
		if (err == nil) != tc.ok || d != tc.digest || s != tc.secret {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.tok, d, s, err, tc.digest, tc.secret, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "SWLT-1-") {
			t.Errorf("Parse(%q): error %q does not show the expected shape", tc.tok, err)
		}
	}
}

func TestDigestAndSecrets(t *testing.T) {
	if ClusterDigest("a") == ClusterDigest("b") || len(ClusterDigest("a")) != 20 {
		t.Fatal("digests must differ per cluster and be 20 characters")
	}
	if !SecretEqual("x", "x") || SecretEqual("x", "y") || SecretEqual("x", "xx") {
		t.Fatal("SecretEqual")
	}
	seen := map[string]bool{}
	for range 100 {
		id := RandomID(12)
		if len(id) != 12 || strings.ToLower(id) != id || seen[id] {
			t.Fatalf("RandomID gave %q", id)
		}
		seen[id] = true
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Make("c", "s"))
	f.Add("SWLT-1-a-b")
	f.Add("----")
	f.Fuzz(func(t *testing.T, tok string) {
		d, s, err := Parse(tok)
		if err == nil && Make("", s) != "SWLT-1-"+ClusterDigest("")+"-"+s {
			t.Fatal("round trip")
		}
		if err == nil && (d == "" || s == "") {
			t.Fatalf("Parse(%q) accepted empty parts", tok)
		}
	})
}
