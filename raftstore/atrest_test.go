package raftstore

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

const marker = "MARKER-plaintext-secret-5e1f0c"

func mustKey(t testing.TB) DataKey {
	t.Helper()
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openBolt(t testing.TB, path string) *raftboltdb.BoltStore {
	t.Helper()
	b, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// grepDir reports the files under dir that contain needle.
func grepDir(t *testing.T, dir, needle string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(needle)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func markerLogs(n int) []*raft.Log {
	var logs []*raft.Log
	for i := 1; i <= n; i++ {
		logs = append(logs, &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand,
			Data: []byte(fmt.Sprintf("entry %d %s", i, marker)), Extensions: []byte("ext " + marker)})
	}
	return logs
}

func TestEncryptedLogStore(t *testing.T) {
	dir := t.TempDir()
	key := mustKey(t)

	// Control: the same entries through raw bolt do leave the marker in the file,
	// so the grep below can see plaintext.
	raw := openBolt(t, filepath.Join(dir, "raw.db"))
	if err := raw.StoreLogs(markerLogs(3)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if len(grepDir(t, dir, marker)) == 0 {
		t.Fatal("control: raw bolt file does not contain the marker")
	}
	os.Remove(filepath.Join(dir, "raw.db"))

	path := filepath.Join(dir, "raft.db")
	bolt := openBolt(t, path)
	s, err := NewEncryptedLogStore(bolt, key)
	if err != nil {
		t.Fatal(err)
	}
	in := markerLogs(100)
	in = append(in, &raft.Log{Index: 101, Term: 2, Type: raft.LogNoop})
	if err := s.StoreLogs(in[:50]); err != nil {
		t.Fatal(err)
	}
	for _, l := range in[50:] {
		if err := s.StoreLog(l); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(string(in[0].Data), marker) {
		t.Fatal("StoreLogs changed the caller's entry")
	}
	bolt.Close()
	if hits := grepDir(t, dir, marker); len(hits) != 0 {
		t.Fatalf("plaintext marker found in %v", hits)
	}

	bolt = openBolt(t, path)
	defer bolt.Close()
	s, _ = NewEncryptedLogStore(bolt, key)
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != 101 {
		t.Fatalf("indexes %d..%d", first, last)
	}
	for _, want := range in {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatal(err)
		}
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
			!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) {
			t.Fatalf("entry %d: got %+v, want %+v", want.Index, got, want)
		}
	}
	var l raft.Log
	if err := s.GetLog(500, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("missing entry: %v, want raft.ErrLogNotFound", err)
	}
	if err := s.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 11 {
		t.Fatalf("first index after DeleteRange %d", first)
	}
}

func TestEncryptedLogStoreRefusals(t *testing.T) {
	key := mustKey(t)
	inner := raft.NewInmemStore()
	s, _ := NewEncryptedLogStore(inner, key)
	if err := s.StoreLogs(markerLogs(3)); err != nil {
		t.Fatal(err)
	}
	sealed := func(i uint64) raft.Log {
		var l raft.Log
		if err := inner.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		l.Data = bytes.Clone(l.Data)
		return l
	}
	cases := []struct {
		name   string
		mutate func() // changes what inner holds at index 1
		key    DataKey
		want   error
	}{
		{"flipped ciphertext byte", func() {
			l := sealed(1)
			l.Data[len(l.Data)-20] ^= 1
			_ = inner.StoreLog(&l)
		}, key, ErrCorrupt},
		{"entry 2's ciphertext moved to index 1", func() {
			l, l2 := sealed(1), sealed(2)
			l.Data = l2.Data
			_ = inner.StoreLog(&l)
		}, key, ErrCorrupt},
		{"term changed", func() {
			l := sealed(1)
			l.Term = 9
			_ = inner.StoreLog(&l)
		}, key, ErrCorrupt},
		{"plaintext entry (older build)", func() {
			_ = inner.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("\x05{\"plain\":\"json command here\"}")})
		}, key, ErrNotEncrypted},
		{"another data key", func() {}, mustKey(t), ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_ = inner.DeleteRange(1, 3)
			_ = s.StoreLogs(markerLogs(3))
			tc.mutate()
			r, _ := NewEncryptedLogStore(inner, tc.key)
			var l raft.Log
			if err := r.GetLog(1, &l); !errors.Is(err, tc.want) {
				t.Fatalf("GetLog: %v, want %v", err, tc.want)
			}
		})
	}
}

func newFileSnaps(t testing.TB, dir string) *raft.FileSnapshotStore {
	t.Helper()
	fss, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return fss
}

func writeSnapshot(t testing.TB, s raft.SnapshotStore, index uint64, data []byte) string {
	t.Helper()
	_, trans := raft.NewInmemTransport("")
	sink, err := s.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized writes, so frames do not line up with them.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 7777)
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	// raft closes the sink again after the FSM's Persist closed it.
	if err := sink.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return sink.ID()
}

func readSnapshot(s raft.SnapshotStore, id string) (*raft.SnapshotMeta, []byte, error) {
	meta, rc, err := s.Open(id)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return meta, b, err
}

func snapshotPayload(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if n >= len(marker) {
		copy(b[n/2:], marker)
	}
	return b
}

func TestEncryptedSnapshotRoundTrip(t *testing.T) {
	key := mustKey(t)
	sizes := []int{0, 1, snapFrame - 1, snapFrame, snapFrame + 1, 3 * snapFrame, 200<<10 + 7}
	for i, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			s := NewEncryptedSnapshotStore(newFileSnaps(t, dir), key)
			want := snapshotPayload(n)
			id := writeSnapshot(t, s, uint64(i+1), want)
			if n >= len(marker) {
				if hits := grepDir(t, dir, marker); len(hits) != 0 {
					t.Fatalf("plaintext marker found in %v", hits)
				}
			}
			meta, got, err := readSnapshot(s, id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want the %d written", len(got), len(want))
			}
			// raft sends exactly meta.Size bytes to a follower: it must be the plaintext's.
			if meta.Size != int64(n) {
				t.Fatalf("meta.Size %d, want %d", meta.Size, n)
			}
			list, err := s.List()
			if err != nil || len(list) != 1 || list[0].Size != int64(n) {
				t.Fatalf("List: %v, %+v", err, list)
			}
		})
	}
}

// rewriteSnapshot changes a snapshot's state file and, like a careful attacker,
// fixes the CRC and size in its meta.json, so only the sealing can notice.
func rewriteSnapshot(t *testing.T, dir, id string, f func([]byte) []byte) {
	t.Helper()
	state := filepath.Join(dir, "snapshots", id, "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b = f(b)
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(dir, "snapshots", id, "meta.json")
	mb, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(mb, &meta); err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(b)
	meta["CRC"], meta["Size"] = h.Sum(nil), len(b)
	mb, _ = json.Marshal(meta)
	if err := os.WriteFile(metaPath, mb, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEncryptedSnapshotRefusals(t *testing.T) {
	key := mustKey(t)
	const full = snapFrame + snapTag
	data := snapshotPayload(2*snapFrame + 100) // frames: full, full, 100 bytes (final)
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		key    DataKey
		want   error
	}{
		{"flipped byte in the second frame", func(b []byte) []byte { b[snapHeader+full+10] ^= 1; return b }, key, ErrCorrupt},
		{"truncated at a frame boundary (final frame dropped)", func(b []byte) []byte { return b[:snapHeader+2*full] }, key, ErrCorrupt},
		{"truncated inside a frame", func(b []byte) []byte { return b[:snapHeader+full+500] }, key, ErrCorrupt},
		{"only the header left", func(b []byte) []byte { return b[:snapHeader] }, key, ErrCorrupt},
		{"frames swapped", func(b []byte) []byte {
			out := append([]byte{}, b[:snapHeader]...)
			out = append(out, b[snapHeader+full:snapHeader+2*full]...)
			out = append(out, b[snapHeader:snapHeader+full]...)
			return append(out, b[snapHeader+2*full:]...)
		}, key, ErrCorrupt},
		{"a frame appended after the final one", func(b []byte) []byte { return append(b, b[snapHeader:snapHeader+full]...) }, key, ErrCorrupt},
		{"salt changed", func(b []byte) []byte { b[10] ^= 1; return b }, key, ErrCorrupt},
		{"plaintext snapshot (older build)", func([]byte) []byte { return []byte(`{"kind":"cluster"}` + "\n") }, key, ErrNotEncrypted},
		{"another data key", func(b []byte) []byte { return b }, mustKey(t), ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			id := writeSnapshot(t, NewEncryptedSnapshotStore(newFileSnaps(t, dir), key), 1, data)
			rewriteSnapshot(t, dir, id, tc.mutate)
			_, got, err := readSnapshot(NewEncryptedSnapshotStore(newFileSnaps(t, dir), tc.key), id)
			if !errors.Is(err, tc.want) {
				t.Fatalf("read %d bytes, error %v; want %v", len(got), err, tc.want)
			}
		})
	}
	// A snapshot sealed under another ID (moved into this one's place) fails too.
	t.Run("snapshot swapped for another", func(t *testing.T) {
		dir := t.TempDir()
		s := NewEncryptedSnapshotStore(newFileSnaps(t, dir), key)
		a := writeSnapshot(t, s, 1, data)
		b := writeSnapshot(t, s, 2, data)
		other, err := os.ReadFile(filepath.Join(dir, "snapshots", b, "state.bin"))
		if err != nil {
			t.Fatal(err)
		}
		rewriteSnapshot(t, dir, a, func([]byte) []byte { return other })
		if _, _, err := readSnapshot(s, a); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v, want %v", err, ErrCorrupt)
		}
	})
}

func TestPlainSize(t *testing.T) {
	for _, n := range []int64{0, 1, snapFrame - 1, snapFrame, snapFrame + 1, 5*snapFrame - 3, 5 * snapFrame} {
		frames := n/snapFrame + 1
		if n > 0 && n%snapFrame == 0 {
			frames = n / snapFrame
		}
		sealed := snapHeader + n + frames*snapTag
		if got := plainSize(sealed); got != n {
			t.Errorf("plainSize(%d) = %d, want %d", sealed, got, n)
		}
	}
}
