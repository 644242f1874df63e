package bed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Teardown works from names alone (the bed ID), so that a bed whose owner was
// killed with -9 goes exactly as a live one does. What a bed leaves on the
// machine, and what removes it:
//   - containers: removed through the engine while it runs; their processes,
//     should the engine be gone, killed through their cgroups (swlbed-ID-hN),
//     which are then removed;
//   - dockerd, containerd, shims, docker-proxy and whatever else runs in a host
//     namespace: SIGTERM to dockerd and containerd in that order, then SIGKILL
//     to everything left in the namespace;
//   - mounts under the bed's directory (dockerd's bind mount of its data root,
//     the containers' network namespace files under its exec root): detached;
//   - the shims' sockets in /run/containerd/s;
//   - the namespaces, which take the veths, the bridge and every firewall rule
//     with them; and last the directory, which marks the bed as existing.

// Owner is the record in Root/ID/owner that tells a live bed from a leftover.
type Owner struct {
	Pid     int       `json:"pid"`
	Start   uint64    `json:"start"` // the pid's start time: a reused pid is not the owner
	Label   string    `json:"label"`
	Hosts   int       `json:"hosts"`
	Created time.Time `json:"created"`
}

// Alive reports whether the owning process still runs.
func (o Owner) Alive() bool {
	state, start, err := procStat(o.Pid)
	return err == nil && start == o.Start && state != 'Z' && state != 'X'
}

func writeOwner(dir, label string, hosts int) error {
	_, start, err := procStat(os.Getpid())
	if err != nil {
		return fmt.Errorf("bed: own start time: %w", err)
	}
	b, _ := json.Marshal(Owner{Pid: os.Getpid(), Start: start, Label: label, Hosts: hosts, Created: time.Now().UTC()})
	return os.WriteFile(filepath.Join(dir, "owner"), append(b, '\n'), 0o644)
}

func readOwner(dir string) (Owner, error) {
	var o Owner
	b, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err != nil {
		return o, err
	}
	return o, json.Unmarshal(b, &o)
}

// Info describes a bed found on the machine.
type Info struct {
	ID    string
	Dir   string
	Owner Owner
	Alive bool
}

// List returns the beds found under Root, live or not.
func List() ([]Info, error) {
	entries, err := os.ReadDir(Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var beds []Info
	for _, e := range entries {
		if !idRe.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(Root, e.Name())
		o, err := readOwner(dir)
		beds = append(beds, Info{ID: e.Name(), Dir: dir, Owner: o, Alive: err == nil && o.Alive()})
	}
	return beds, nil
}

var (
	idRe   = regexp.MustCompile(`^[0-9a-f]{6}$`)
	nameRe = regexp.MustCompile(`^` + Prefix + `([0-9a-f]{6})-(sw|h([0-9]+))$`)
)

// Sweep tears down every bed whose owner is gone: found by its directory, its
// namespaces or its cgroups, whichever survived. It returns the IDs swept.
// New calls it, so a test killed with -9 leaves nothing for long.
func Sweep(log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(Root, 0o755); err != nil {
		return nil, err
	}
	// One sweeper at a time: two would fight over the same leftovers. The
	// lock is on Root itself, so that it leaves no file.
	lock, err := os.Open(Root)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}

	ids := map[string]bool{}
	entries, _ := os.ReadDir(Root)
	for _, e := range entries {
		switch {
		case idRe.MatchString(e.Name()):
			ids[e.Name()] = true
		case strings.HasPrefix(e.Name(), ".tmp-"):
			// A claim that never became a bed (its maker died between
			// mkdir and rename); old enough that no one is still making it.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.RemoveAll(filepath.Join(Root, e.Name()))
			}
		}
	}
	for _, n := range netnsNames() {
		if m := nameRe.FindStringSubmatch(n); m != nil {
			ids[m[1]] = true
		}
	}
	for _, n := range cgroupNames(func(s string) bool { return nameRe.MatchString(s) }) {
		ids[nameRe.FindStringSubmatch(n)[1]] = true
	}

	var swept []string
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		// The directory is made (with its owner) before anything else of a
		// bed and removed after everything else, so a bed with no readable
		// owner is a leftover.
		if o, err := readOwner(filepath.Join(Root, id)); err == nil && o.Alive() {
			continue
		}
		log.Info("sweeping a dead bed", "bed", id)
		if err := teardown(id, log.With("bed", id)); err != nil {
			errs = append(errs, err)
		}
		swept = append(swept, id)
	}
	return swept, errors.Join(errs...)
}

// Leftovers lists what of bed id is still on the machine: namespaces,
// cgroups, mounts, processes naming its directory, the directory itself.
// After teardown it must be empty.
func Leftovers(id string) []string {
	dir := filepath.Join(Root, id)
	var left []string
	for _, n := range netnsNames() {
		if strings.HasPrefix(n, Prefix+id+"-") {
			left = append(left, "namespace "+n)
		}
	}
	for _, n := range cgroupNames(func(s string) bool { return strings.HasPrefix(s, Prefix+id+"-") }) {
		left = append(left, "cgroup "+n)
	}
	for _, m := range mountsUnder(dir) {
		left = append(left, "mount "+m)
	}
	for _, pid := range allPids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(b, []byte(dir+"/")) {
			left = append(left, fmt.Sprintf("process %d %s", pid, bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		left = append(left, "directory "+dir)
	}
	return left
}

func netnsNames() []string {
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// teardown removes bed id, finding its hosts by their namespaces, cgroups
// and directories.
func teardown(id string, log *slog.Logger) error {
	dir := filepath.Join(Root, id)
	hosts := map[int]bool{}
	for _, n := range netnsNames() {
		if m := nameRe.FindStringSubmatch(n); m != nil && m[1] == id && m[3] != "" {
			i, _ := strconv.Atoi(m[3])
			hosts[i] = true
		}
	}
	for _, n := range cgroupNames(func(s string) bool { return strings.HasPrefix(s, Prefix+id+"-h") }) {
		if m := nameRe.FindStringSubmatch(n); m != nil && m[3] != "" {
			i, _ := strconv.Atoi(m[3])
			hosts[i] = true
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if i, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "h")); err == nil && e.IsDir() && strings.HasPrefix(e.Name(), "h") {
			hosts[i] = true
		}
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range hosts {
		wg.Go(func() {
			name := fmt.Sprintf("%s%s-h%d", Prefix, id, i)
			if err := teardownHost(name, filepath.Join(dir, fmt.Sprintf("h%d", i)), log.With("host", i)); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("h%d: %w", i, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sw := Prefix + id + "-sw"
	if err := killAll(sw, func() []int { return pidsInNetns(nsInode(sw)) }); err != nil {
		errs = append(errs, err)
	}
	if err := netnsDel(sw); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("teardown of bed %s: %w", id, err)
	}
	return nil
}

// teardownHost removes one host: ns is its namespace (and cgroup) name, dir
// its directory. Each step runs whatever the previous ones left.
func teardownHost(ns, dir string, log *slog.Logger) error {
	var errs []error
	ino := nsInode(ns)
	inNS := func() []int { return pidsInNetns(ino) }

	// Containers first, through the engine if it still answers: it stops
	// them, removes their mounts, network namespaces and cgroups, and lets
	// their shims exit cleanly.
	removeContainers(filepath.Join(dir, "docker.sock"), log)

	// Then the engine, and containerd under it. SIGTERM lets dockerd unmount
	// what it mounted and remove its rules.
	for _, daemon := range []string{"dockerd", "containerd"} {
		pids := slices.DeleteFunc(inNS(), func(p int) bool { return comm(p) != daemon })
		if left := stopGently(pids, 10*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("%s %v survives SIGKILL", daemon, left))
		}
	}
	// Read the shims' socket paths while their records are still there.
	socks := shimSockets(filepath.Join(dir, "exec", "containerd"))

	if err := killAll(ns, inNS); err != nil {
		errs = append(errs, err)
	}
	for _, cg := range cgroupDirs(ns) {
		if err := killAll(cg, func() []int { return cgroupPids(cg) }); err != nil {
			errs = append(errs, err)
		}
		if err := removeCgroup(cg); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range socks {
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if err := netnsDel(ns); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func removeContainers(sock string, log *slog.Logger) {
	if _, err := os.Stat(sock); err != nil {
		return
	}
	api := newEngineClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	err := api.get(pctx, "/_ping", nil)
	pcancel()
	if err != nil {
		return // the engine is gone: its containers go by their cgroups
	}
	var cs []struct{ ID string }
	if err := api.get(ctx, "/containers/json?all=1", &cs); err != nil {
		log.Warn("list containers", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if err := api.do(ctx, "DELETE", "/containers/"+url.PathEscape(c.ID)+"?force=1&v=1", nil); err != nil {
				log.Warn("remove container", "id", c.ID, "err", err)
			}
		})
	}
	wg.Wait()
}

// shimSockets reads the socket address each containerd shim recorded in its
// task's bundle: the sockets live outside the bed, in /run/containerd/s, and a
// SIGKILLed shim leaves its socket behind.
func shimSockets(state string) []string {
	files, _ := filepath.Glob(filepath.Join(state, "io.containerd.runtime.v2.task", "*", "*", "address"))
	var socks []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		p := strings.TrimPrefix(strings.TrimSpace(string(b)), "unix://")
		if strings.HasPrefix(p, "/run/containerd/s/") && !strings.Contains(p, "..") {
			socks = append(socks, p)
		}
	}
	return socks
}

func netnsDel(name string) error {
	if _, err := os.Lstat(nsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}
