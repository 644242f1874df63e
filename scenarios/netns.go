package scenarios

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Netns is a network namespace the harness owns: every node of a cluster runs in
// it on its own loopback address, and faults are nftables rules in a table of
// ours inside it. Nothing here touches the host's root namespace.
type Netns struct {
	Name string
	ino  uint64
}

// nftTable is our table inside the namespace. Rules sit on the input hook so a
// dropped packet vanishes silently, as on a real network (dropping on output
// would hand the sender an immediate EPERM instead of a timeout).
const nftTable = "swl_scn"

// NewNetns creates a fresh namespace with loopback up and our empty table.
func NewNetns() (*Netns, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	n := &Netns{Name: "swl-scn-" + hex.EncodeToString(b)}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	fail := func(err error) (*Netns, error) {
		n.Close()
		return nil, err
	}
	if out, err := exec.Command("ip", "-n", n.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("lo up in %s: %v: %s", n.Name, err, bytes.TrimSpace(out)))
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/netns/"+n.Name, &st); err != nil {
		return fail(fmt.Errorf("stat netns %s: %w", n.Name, err))
	}
	n.ino = st.Ino
	table := fmt.Sprintf("table inet %s {\n  chain input { type filter hook input priority 0; policy accept; }\n}\n", nftTable)
	if err := n.nft(table); err != nil {
		return fail(err)
	}
	return n, nil
}

func (n *Netns) nft(script string) error {
	cmd := exec.Command("ip", "netns", "exec", n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s\nscript:\n%s", n.Name, err, bytes.TrimSpace(out), script)
	}
	return nil
}

// Command returns a command that runs argv inside the namespace.
func (n *Netns) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// SetRules replaces every fault rule in one nft transaction, so the network moves
// from one fault state to the next without an instant of neither.
func (n *Netns) SetRules(rules []Rule) error {
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain inet %s input\n", nftTable)
	for _, r := range rules {
		for _, line := range r.nft() {
			fmt.Fprintf(&b, "add rule inet %s input %s\n", nftTable, line)
		}
	}
	return n.nft(b.String())
}

// Ruleset returns the current ruleset of the namespace, for the results folder.
func (n *Netns) Ruleset() string {
	out, err := n.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// Contains reports whether pid lives in this namespace.
func (n *Netns) Contains(pid int) bool {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	return err == nil && link == fmt.Sprintf("net:[%d]", n.ino)
}

// Pids lists every process in the namespace.
func (n *Netns) Pids() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && n.Contains(pid) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// Close kills every process left in the namespace (daemons, and the tasks they
// leave running by design) and deletes it.
func (n *Netns) Close() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := n.Pids()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns %s: processes %v survive SIGKILL", n.Name, pids)
		}
		// Killed processes take a moment to be reaped by their parents.
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Rule drops packets from one address to another: all of them, only those to or
// from some ports (one subsystem), or a random percentage of them (loss).
type Rule struct {
	From, To string
	Ports    []int // empty: every packet; else packets with either port among these
	LossPct  int   // 0: drop all matching; 1..99: drop this share at random
}

func (r Rule) nft() []string {
	base := fmt.Sprintf("ip saddr %s ip daddr %s", r.From, r.To)
	tail := "drop"
	if r.LossPct > 0 && r.LossPct < 100 {
		tail = fmt.Sprintf("numgen random mod 100 < %d drop", r.LossPct)
	}
	if len(r.Ports) == 0 {
		return []string{base + " " + tail}
	}
	ps := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		ps[i] = strconv.Itoa(p)
	}
	set := "{ " + strings.Join(ps, ", ") + " }"
	var lines []string
	for _, proto := range []string{"tcp", "udp"} {
		for _, dir := range []string{"dport", "sport"} {
			lines = append(lines, fmt.Sprintf("%s meta l4proto %s th %s %s %s", base, proto, dir, set, tail))
		}
	}
	return lines
}

// Grudge is a partition: for each node, the nodes it cannot reach. Partitions are
// symmetric unless built otherwise.
type Grudge map[string][]string

// Components cuts every link between different components; nodes in no component
// keep all their links (a bridge node, for example).
func Components(groups ...[]string) Grudge {
	g := Grudge{}
	for i, a := range groups {
		for j, b := range groups {
			if i == j {
				continue
			}
			for _, x := range a {
				g[x] = append(g[x], b...)
			}
		}
	}
	return g
}

// Rules turns the grudge into drop rules; ports and loss qualify every rule.
func (g Grudge) Rules(ports []int, lossPct int) []Rule {
	var rules []Rule
	froms := make([]string, 0, len(g))
	for f := range g {
		froms = append(froms, f)
	}
	sort.Strings(froms)
	for _, from := range froms {
		for _, to := range g[from] {
			// Input hook: drop what arrives at `from` from `to`; the grudge of `to`
			// against `from` covers the other direction.
			rules = append(rules, Rule{From: to, To: from, Ports: ports, LossPct: lossPct})
		}
	}
	return rules
}
