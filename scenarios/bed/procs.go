package bed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Processes, cgroups and mounts, read from /proc and /sys: teardown must work
// from nothing but names, for beds whose owner died with all its state.

// nsInode identifies a named network namespace; 0 if it does not exist.
func nsInode(name string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(nsPath(name), &st); err != nil {
		return 0
	}
	return st.Ino
}

// pidsInNetns lists the live processes in the namespace with that inode
// (a zombie has left its namespaces and is not listed).
func pidsInNetns(ino uint64) []int {
	if ino == 0 {
		return nil
	}
	want := fmt.Sprintf("net:[%d]", ino)
	var pids []int
	for _, pid := range allPids() {
		// Never ourselves: a thread of ours may be visiting (Host.Do).
		if pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

func allPids() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// procStat returns a process's state letter and start time (clock ticks since
// boot), which together with the pid name one process for its whole life.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses; fields resume after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22 of proc(5)
	return f[0][0], start, err
}

func alive(pid int) bool {
	state, _, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}

// stopGently sends SIGTERM, waits up to grace, then SIGKILLs what is left and
// waits up to 5 s more. It returns the survivors.
func stopGently(pids []int, grace time.Duration) []int {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	left := waitGone(pids, grace)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return waitGone(left, 5*time.Second)
}

func waitGone(pids []int, max time.Duration) []int {
	deadline := time.Now().Add(max)
	for {
		left := slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return !alive(p) })
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killAll SIGKILLs whatever list returns until it returns nothing: killing a
// process can let its children be seen (or be forked) a moment later.
func killAll(what string, list func() []int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := list()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: processes %v survive SIGKILL", what, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const cgroupRoot = "/sys/fs/cgroup"

// cgroupDirs lists the directories named name in every cgroup hierarchy:
// /sys/fs/cgroup/NAME (v2) and /sys/fs/cgroup/CONTROLLER/NAME (v1).
func cgroupDirs(name string) []string {
	var dirs []string
	if fi, err := os.Stat(filepath.Join(cgroupRoot, name)); err == nil && fi.IsDir() {
		dirs = append(dirs, filepath.Join(cgroupRoot, name))
	}
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		d := filepath.Join(cgroupRoot, e.Name(), name)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// cgroupNames lists the names at the top of every hierarchy that match keep.
func cgroupNames(keep func(string) bool) []string {
	seen := map[string]bool{}
	add := func(dir string) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() && keep(e.Name()) {
				seen[e.Name()] = true
			}
		}
	}
	add(cgroupRoot)
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		add(filepath.Join(cgroupRoot, e.Name()))
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// cgroupPids lists every process in the cgroup and its children.
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroup removes the cgroup and its children, deepest first (a cgroup
// directory goes with rmdir, once empty of processes and children).
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for _, d := range slices.Backward(dirs) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	return mounts
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or below dir (lazily: a mount still in
// use goes once its last user lets go) until none is left; mounts may be
// stacked on one point.
func unmountUnder(dir string) error {
	for range 20 {
		mounts := mountsUnder(dir)
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	return fmt.Errorf("mounts survive unmounting: %v", mountsUnder(dir))
}
