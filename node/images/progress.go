package images

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/swarmlet/swarmlet/node/engine"
)

// pullProgress sums a pull's per-layer events into one line:
// "12.1MB/33.0MB, 1/3 layers". Docker reports each layer's download as it goes and
// marks it complete (or already there); extraction follows the download.
type pullProgress struct {
	mu     sync.Mutex
	layers map[string]*layerProgress
	order  []string
}

type layerProgress struct {
	current, total int64
	done           bool
}

func (p *pullProgress) add(ev engine.PullEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.layers == nil {
		p.layers = map[string]*layerProgress{}
	}
	switch ev.Status {
	case "Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete",
		"Extracting", "Pull complete", "Already exists":
	default:
		return // "Pulling from x", "Digest: ...", "Status: ...": not a layer
	}
	l := p.layers[ev.Layer]
	if l == nil {
		l = &layerProgress{}
		p.layers[ev.Layer] = l
		p.order = append(p.order, ev.Layer)
	}
	switch ev.Status {
	case "Downloading":
		if ev.Total > 0 {
			l.total = ev.Total
		}
		l.current = max(l.current, ev.Current)
	case "Download complete", "Verifying Checksum", "Extracting":
		l.current = l.total
	case "Pull complete", "Already exists":
		l.current, l.done = l.total, true
	}
}

func (p *pullProgress) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.layers) == 0 {
		return ""
	}
	var cur, total int64
	done := 0
	for _, l := range p.layers {
		cur, total = cur+l.current, total+l.total
		if l.done {
			done++
		}
	}
	if total == 0 {
		return fmt.Sprintf("%d/%d layers", done, len(p.layers))
	}
	return fmt.Sprintf("%s/%s, %d/%d layers", HumanSize(cur), HumanSize(total), done, len(p.layers))
}

// HumanSize writes bytes as docker does: 12.1MB (powers of 1000).
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	s := fmt.Sprintf("%.1f", f)
	return strings.TrimSuffix(s, ".0") + units[i]
}

// countingReader counts what passes through it, for a transfer's progress.
type countingReader struct {
	r  io.Reader
	mu sync.Mutex
	n  int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
