package images

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestVerifyArchive(t *testing.T) {
	id, classic := archive([]string{"base layer", "app layer"}, false, false)
	ociID, oci := archive([]string{"base layer", "app layer"}, true, false)
	dupID, dup := archive([]string{"same", "other", "same"}, false, true)
	_, other := archive([]string{"another image"}, false, false)
	flip := func(b []byte, at string) []byte {
		c := bytes.Clone(b)
		i := bytes.Index(c, []byte(at))
		c[i] ^= 0x20
		return c
	}
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
		err     string // "" when it must verify
	}{
		{"classic layout", classic, id, ""},
		{"any image when none is named", classic, "", ""},
		{"oci layout", oci, ociID, ""},
		{"a repeated layer as a symlink", dup, dupID, ""},
		{"a flipped byte in a layer", flip(classic, "app layer"), id, "layer 2 has digest"},
		{"a flipped byte in the config", flip(classic, `"amd64"`), id, "config"},
		{"another image than announced", other, id, "holds image"},
		{"cut short", classic[:len(classic)/2], id, ""},
		{"not a tar", []byte("hello"), id, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var copied bytes.Buffer
			got, err := VerifyArchive(bytes.NewReader(tc.archive), &copied, tc.want)
			bad := strings.HasPrefix(tc.name, "cut") || strings.HasPrefix(tc.name, "not")
			switch {
			case tc.err == "" && !bad:
				if err != nil {
					t.Fatal(err)
				}
				if tc.want != "" && got != tc.want {
					t.Fatalf("verified %s, want %s", got, tc.want)
				}
				if !bytes.Equal(copied.Bytes(), tc.archive) {
					t.Fatalf("copied %d bytes of %d", copied.Len(), len(tc.archive))
				}
			default:
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want a corrupt archive error naming %q, got %v", tc.err, err)
				}
			}
		})
	}
}

// The archive a real engine saves verifies against the engine's own image ID:
// the checks read docker's format, not only this package's test archives.
func TestVerifyArchiveFromDocker(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker engine socket at /var/run/docker.sock")
	}
	const img = "swarmlet/whoami:test"
	idb, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", img).Output()
	if err != nil {
		t.Skipf("no %s image (make image builds it)", img)
	}
	id := strings.TrimSpace(string(idb))
	saved, err := exec.Command("docker", "save", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := VerifyArchive(bytes.NewReader(saved), &bytes.Buffer{}, id); err != nil || got != id {
		t.Fatalf("docker's archive of %s: %s, %v", id, got, err)
	}
	bad := bytes.Clone(saved)
	bad[len(bad)/2] ^= 0xff
	if _, err := VerifyArchive(bytes.NewReader(bad), &bytes.Buffer{}, id); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a flipped byte in docker's archive: %v", err)
	}
}
