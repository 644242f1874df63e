package bed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	// Prefix names everything a bed creates outside its directory: network
	// namespaces (swlbed-ID-sw, swlbed-ID-hN) and cgroups (swlbed-ID-hN).
	Prefix = "swlbed-"
	// Root holds one directory per bed. It is fixed, not an option, because the
	// sweeper must find every bed on the machine to tell a live one from a
	// leftover: a bed under another root would look like an orphan.
	Root = "/var/lib/swlbed"
	// Subnet is the bed's network. Every bed uses the same one: each has its own
	// switch namespace, so beds never see each other's packets.
	Subnet = "10.199.0.0/24"
	// MaxHosts keeps host addresses (.10+i) and docker0 ranges (10.(200+i)/16)
	// valid.
	MaxHosts = 50

	bridgeName = "br0"
	hostIface  = "eth0"
)

// Options shape a bed.
type Options struct {
	Hosts int          // 1..MaxHosts
	Label string       // who owns the bed, recorded for `swlbed ls` and `down`; default the program name
	Log   *slog.Logger // nil: discard
	// StartTimeout bounds the whole bring-up (namespaces and every engine);
	// default 90 s. A deadline on the context passed to New also applies.
	StartTimeout time.Duration
	// LiveRestore turns dockerd's live-restore on: containers keep running
	// while their engine is restarted (Host.RestartEngine).
	LiveRestore bool
}

// Bed is K hosts joined by one bridge. Every host runs its own containerd and
// dockerd inside its namespace; the root namespace's network is never touched.
type Bed struct {
	ID     string
	Dir    string // Root/ID
	Switch string // name of the namespace holding the bridge
	Hosts  []*Host

	log         *slog.Logger
	faults      faults
	liveRestore bool
	closeOnce   sync.Once
	closeErr    error
}

// New sweeps leftovers of dead beds, then brings up a fresh one. On failure
// it removes what it made before returning.
func New(ctx context.Context, opts Options) (*Bed, error) {
	if opts.Hosts < 1 || opts.Hosts > MaxHosts {
		return nil, fmt.Errorf("bed: %d hosts asked; a bed has 1 to %d", opts.Hosts, MaxHosts)
	}
	if err := Check(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bed")
	if opts.Label == "" {
		opts.Label = filepath.Base(os.Args[0])
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if swept, err := Sweep(log); err != nil {
		log.Warn("sweep before start", "swept", swept, "err", err)
	} else if len(swept) > 0 {
		log.Info("swept leftovers of dead beds", "beds", swept)
	}

	id, dir, err := claimDir(opts.Label, opts.Hosts)
	if err != nil {
		return nil, err
	}
	b := &Bed{ID: id, Dir: dir, Switch: Prefix + id + "-sw", log: log.With("bed", id), liveRestore: opts.LiveRestore}
	for i := 1; i <= opts.Hosts; i++ {
		b.Hosts = append(b.Hosts, newHost(b, i))
	}
	start := time.Now()
	if err := b.up(ctx); err != nil {
		// A daemon started a moment ago may still be nsenter, not yet in its
		// namespace, where teardown looks for processes: end our own children
		// first, by their handles.
		for _, h := range b.Hosts {
			for _, d := range []*daemon{h.dockerd, h.containerd} {
				if d != nil && d.cmd.Process != nil {
					_ = d.cmd.Process.Kill()
					select {
					case <-d.exited:
					case <-time.After(10 * time.Second):
					}
				}
			}
		}
		if cerr := b.Close(); cerr != nil {
			err = fmt.Errorf("%w (and teardown: %v)", err, cerr)
		}
		return nil, fmt.Errorf("bed %s: %w", id, err)
	}
	b.log.Info("up", "hosts", len(b.Hosts), "took", time.Since(start).Round(time.Millisecond))
	return b, nil
}

// Check says what the machine lacks for a bed, in one line, or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("bed: needs root (network namespaces, veths, dockerd)")
	}
	var missing []string
	for _, tool := range []string{"ip", "nft", "nsenter", "dockerd", "containerd", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("bed: %s not found in PATH (Debian: iproute2, nftables, util-linux, docker.io)", strings.Join(missing, ", "))
	}
	return nil
}

// claimDir makes Root/ID with its owner file in one rename, so a sweeper never
// sees a bed directory without an owner.
func claimDir(label string, hosts int) (string, string, error) {
	if err := os.MkdirAll(Root, 0o755); err != nil {
		return "", "", fmt.Errorf("bed: %w", err)
	}
	for range 10 {
		var rb [3]byte
		_, _ = rand.Read(rb[:])
		id := hex.EncodeToString(rb[:])
		dir := filepath.Join(Root, id)
		if _, err := os.Lstat(dir); err == nil {
			continue
		}
		tmp, err := os.MkdirTemp(Root, ".tmp-")
		if err != nil {
			return "", "", fmt.Errorf("bed: %w", err)
		}
		if err := writeOwner(tmp, label, hosts); err != nil {
			os.RemoveAll(tmp)
			return "", "", err
		}
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return "", "", fmt.Errorf("bed: %w", err)
		}
		return id, dir, nil
	}
	return "", "", errors.New("bed: no free bed ID after 10 tries")
}

func (b *Bed) up(ctx context.Context) error {
	if err := ipNetnsAdd(b.Switch); err != nil {
		return err
	}
	var sw strings.Builder
	fmt.Fprintf(&sw, "link set lo up\nlink add %s type bridge\nlink set %s up\n", bridgeName, bridgeName)
	for _, h := range b.Hosts {
		if err := ipNetnsAdd(h.NS); err != nil {
			return err
		}
		// Both ends are made in the switch and the peer moved straight into
		// the host: nothing ever exists in the root namespace.
		fmt.Fprintf(&sw, "link add %s type veth peer name %s netns %s\n", h.Port, hostIface, h.NS)
		fmt.Fprintf(&sw, "link set %s master %s up\n", h.Port, bridgeName)
	}
	if err := ipBatch(b.Switch, sw.String()); err != nil {
		return err
	}
	if err := b.faults.init(b.Switch); err != nil {
		return err
	}
	for _, h := range b.Hosts {
		// No default route: a host reaches its subnet and nothing else.
		script := fmt.Sprintf("link set lo up\naddr add %s/24 dev %s\nlink set %s up\n", h.Addr, hostIface, hostIface)
		if err := ipBatch(h.NS, script); err != nil {
			return err
		}
		// A new namespace may inherit forwarding from the root one. Start from
		// a fresh machine's state, so dockerd sets up its firewall as it does
		// there (it enables forwarding and sets the FORWARD policy to DROP).
		if err := h.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0o644)
		}); err != nil {
			return fmt.Errorf("%s: ip_forward=0: %w", h.Name, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(b.Hosts))
	for i, h := range b.Hosts {
		wg.Go(func() { errs[i] = h.startEngine(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every daemon and process of the bed and removes its namespaces,
// mounts, cgroups and files. It is safe to call more than once.
func (b *Bed) Close() error {
	b.closeOnce.Do(func() {
		start := time.Now()
		b.closeErr = teardown(b.ID, b.log)
		// Our own children must also be reaped, or they linger as zombies.
		for _, h := range b.Hosts {
			h.reap(5 * time.Second)
		}
		b.log.Info("down", "took", time.Since(start).Round(time.Millisecond), "err", b.closeErr)
	})
	return b.closeErr
}

// Host returns host i (1-based), or nil.
func (b *Bed) Host(i int) *Host {
	if i < 1 || i > len(b.Hosts) {
		return nil
	}
	return b.Hosts[i-1]
}

func hostAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 199, 0, byte(10 + i)}) }

func nsPath(name string) string { return "/run/netns/" + name }

func ipNetnsAdd(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

func ipBatch(ns, script string) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s: %v: %s\nscript:\n%s", ns, err, bytes.TrimSpace(out), script)
	}
	return nil
}
