package raftstore

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileWithoutAutolock(t *testing.T) {
	dir := t.TempDir()
	kf, dek, err := CreateKeyFile(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if kf.Autolock() {
		t.Fatal("autolock on")
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	back, err := LoadKeyFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := back.DataKey()
	if err != nil || got != dek {
		t.Fatalf("DataKey after reload: %v (same key %v)", err, got == dek)
	}
	if _, _, err := CreateKeyFile(dir, ""); err == nil || !strings.Contains(err.Error(), "refusing to replace") {
		t.Errorf("second CreateKeyFile: %v", err)
	}
	if _, err := LoadKeyFile(t.TempDir()); !errors.Is(err, ErrNoKeyFile) {
		t.Errorf("LoadKeyFile of an empty dir: %v, want ErrNoKeyFile", err)
	}
}

func TestKeyFileAutolock(t *testing.T) {
	dir := t.TempDir()
	key1, err := NewUnlockKey()
	if err != nil {
		t.Fatal(err)
	}
	_, dek, err := CreateKeyFile(dir, key1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, KeyFileName))
	body := strings.TrimPrefix(key1, "SWLKEY-1-")
	if strings.Contains(string(raw), body) || strings.Contains(string(raw), `"kek"`) {
		t.Fatal("the key file holds the unlock key or a KEK")
	}

	// A restart: the data key needs the unlock key.
	kf, err := LoadKeyFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !kf.Autolock() {
		t.Fatal("autolock off after reload")
	}
	if _, err := kf.DataKey(); !errors.Is(err, ErrLocked) {
		t.Fatalf("DataKey without the unlock key: %v, want ErrLocked", err)
	}
	if err := kf.RotateUnlockKey(key1); !errors.Is(err, ErrLocked) {
		t.Fatalf("RotateUnlockKey while locked: %v, want ErrLocked", err)
	}
	wrong, _ := NewUnlockKey()
	cases := []struct {
		name string
		key  string
		want error
	}{
		{"wrong key", wrong, ErrWrongUnlockKey},
		{"empty", "", ErrMalformedUnlockKey},
		{"swarm's prefix", "SWMKEY-1-" + body, ErrMalformedUnlockKey},
		{"one character short", key1[:len(key1)-1], ErrMalformedUnlockKey},
		{"upper case", strings.ToUpper(key1), ErrMalformedUnlockKey},
		{"too large for 256 bits", "SWLKEY-1-" + strings.Repeat("z", 50), ErrMalformedUnlockKey},
	}
	for _, tc := range cases {
		if _, err := kf.Unlock(tc.key); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		} else if strings.Contains(err.Error(), body[:20]) {
			t.Errorf("%s: the error repeats the key: %v", tc.name, err)
		}
	}
	got, err := kf.Unlock(key1 + "\n")
	if err != nil || got != dek {
		t.Fatalf("Unlock with the right key: %v (same key %v)", err, got == dek)
	}

	// Rotate: the new key opens, the old one does not.
	key2, _ := NewUnlockKey()
	if err := kf.RotateUnlockKey(key2); err != nil {
		t.Fatal(err)
	}
	kf, _ = LoadKeyFile(dir)
	if _, err := kf.Unlock(key1); !errors.Is(err, ErrWrongUnlockKey) {
		t.Fatalf("old key after rotation: %v, want ErrWrongUnlockKey", err)
	}
	if got, err := kf.Unlock(key2); err != nil || got != dek {
		t.Fatalf("new key after rotation: %v (same data key %v)", err, got == dek)
	}

	// Autolock off (swarmlet update --autolock=false): the data dir opens alone.
	if err := kf.RotateUnlockKey(""); err != nil {
		t.Fatal(err)
	}
	kf, _ = LoadKeyFile(dir)
	if got, err := kf.DataKey(); kf.Autolock() || err != nil || got != dek {
		t.Fatalf("after turning autolock off: autolock %v, %v", kf.Autolock(), err)
	}
}

// TestKeyFileTampered: flipping the autolock flag or the wrapped key in the file is
// refused, never silently accepted.
func TestKeyFileTampered(t *testing.T) {
	key, _ := NewUnlockKey()
	cases := []struct {
		name   string
		unlock string
		edit   func(map[string]any)
		want   string
	}{
		{"autolock turned off, no KEK", key, func(m map[string]any) { m["autolock"] = false }, "KEK is missing"},
		{"autolock turned on, KEK kept", "", func(m map[string]any) { m["autolock"] = true }, "KEK is present"},
		{"KEK replaced", "", func(m map[string]any) { m["kek"] = make([]byte, 32) }, ErrCorrupt.Error()},
		{"future version", "", func(m map[string]any) { m["version"] = 2 }, "version 2 is not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := CreateKeyFile(dir, tc.unlock); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, KeyFileName)
			b, _ := os.ReadFile(path)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			tc.edit(m)
			b, _ = json.Marshal(m)
			_ = os.WriteFile(path, b, 0o600)
			kf, err := LoadKeyFile(dir)
			if err == nil {
				_, err = kf.DataKey()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
