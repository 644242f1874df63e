package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
)

// ErrCorrupt marks an image archive whose content does not match its digests: a
// transfer to refuse (and retry from another node), never to load.
var ErrCorrupt = errors.New("image archive does not match its digests")

// keepBytes bounds the small entries (manifest, configs) kept in memory while an
// archive streams through VerifyArchive; layers are only hashed.
const (
	keepEntry = 1 << 20
	keepTotal = 32 << 20
)

// VerifyArchive copies a docker save archive from r to w and checks, on the way,
// that it holds exactly the image wantID (sha256:...; "" accepts the one image the
// archive holds): the config's sha256 is the image ID, and each layer's sha256 is
// the diff ID the config lists for it, so every byte that docker load would use is
// covered by the ID. It returns the image ID it verified. Both the classic layout
// (docker 20.10: <id>.json, <dir>/layer.tar) and the OCI layout of newer engines
// (blobs/sha256/...) name their files in manifest.json, which is all it reads.
func VerifyArchive(r io.Reader, w io.Writer, wantID string) (string, error) {
	tee := io.TeeReader(r, w)
	tr := tar.NewReader(tee)
	digests := map[string]string{} // entry path -> sha256:hex of its content
	links := map[string]string{}   // symlink path -> target path
	kept := map[string][]byte{}
	keptTotal := 0
	var h hash.Hash = sha256.New()
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: read archive: %v", ErrCorrupt, err)
		}
		name := path.Clean(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink && !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			links[name] = path.Clean(strings.TrimPrefix(target, "/"))
			continue
		case tar.TypeReg:
		default:
			continue
		}
		h.Reset()
		var buf *strings.Builder
		if name == "manifest.json" && hdr.Size <= keepTotal || hdr.Size <= keepEntry && keptTotal+int(hdr.Size) <= keepTotal {
			buf = &strings.Builder{}
		}
		dst := io.Writer(h)
		if buf != nil {
			dst = io.MultiWriter(h, buf)
		}
		if _, err := io.Copy(dst, tr); err != nil {
			return "", fmt.Errorf("%w: read %s: %v", ErrCorrupt, name, err)
		}
		digests[name] = "sha256:" + hex.EncodeToString(h.Sum(nil))
		if buf != nil {
			kept[name] = []byte(buf.String())
			keptTotal += buf.Len()
		}
	}
	// Whatever follows the last entry (tar's end blocks) belongs to the copy too.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", fmt.Errorf("%w: read archive: %v", ErrCorrupt, err)
	}
	resolve := func(p string) string {
		p = path.Clean(p)
		for i := 0; i < 8; i++ { // a link to a link; bounded against loops
			t, ok := links[p]
			if !ok {
				break
			}
			p = t
		}
		return p
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	raw, ok := kept["manifest.json"]
	if !ok {
		return "", fmt.Errorf("%w: no manifest.json", ErrCorrupt)
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return "", fmt.Errorf("%w: manifest.json: %v", ErrCorrupt, err)
	}
	if len(manifest) != 1 {
		return "", fmt.Errorf("%w: the archive holds %d images, want 1", ErrCorrupt, len(manifest))
	}
	m := manifest[0]
	cfgPath := resolve(m.Config)
	id, ok := digests[cfgPath]
	if !ok {
		return "", fmt.Errorf("%w: config %s missing", ErrCorrupt, m.Config)
	}
	// The file is named by its digest in both layouts; a mismatch is a corrupt config.
	if base := path.Base(cfgPath); strings.TrimSuffix(base, ".json") != strings.TrimPrefix(id, "sha256:") {
		return "", fmt.Errorf("%w: config %s has digest %s", ErrCorrupt, m.Config, short(id))
	}
	if wantID != "" && id != wantID {
		return "", fmt.Errorf("%w: the archive holds image %s, not %s", ErrCorrupt, short(id), short(wantID))
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(kept[cfgPath], &cfg); err != nil {
		return "", fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return "", fmt.Errorf("%w: the config lists %d layers, the archive %d", ErrCorrupt, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for i, l := range m.Layers {
		got, ok := digests[resolve(l)]
		if !ok {
			return "", fmt.Errorf("%w: layer %s missing", ErrCorrupt, l)
		}
		if got != cfg.RootFS.DiffIDs[i] {
			return "", fmt.Errorf("%w: layer %d has digest %s, the config says %s", ErrCorrupt, i+1, short(got), short(cfg.RootFS.DiffIDs[i]))
		}
	}
	return id, nil
}

// short abbreviates a digest for messages: sha256:0123456789ab.
func short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
