package cnet

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Docker's firewall and the cluster network.
//
// Docker sets the filter table's FORWARD policy to DROP and accepts, per
// bridge, only what leaves its containers, replies to them, and published
// ports; its isolation chains drop traffic between bridges. A packet from a
// container on another host arrives through the vxlan device, is forwarded to
// our bridge, matches none of that, and is dropped. Docker keeps one place for
// users: the DOCKER-USER chain, jumped to first from FORWARD, which it creates
// and never flushes. The cluster's rules go there, as flannel's FLANNEL-FWD
// rules go in FORWARD: accept what comes from the container pool and what goes
// to it. Because DOCKER-USER runs before the isolation chains, the same rules
// also let containers of several nodes on one engine (the one-machine demo)
// reach each other across their bridges.
//
// Why the iptables command and not netlink: Docker 20.10 programs its chains
// with the iptables command, and here that is iptables-nft (`iptables -V`:
// "iptables v1.8.9 (nf_tables)"): its rules live in nftables but encoded the
// way iptables-nft writes them (xtables match and target payloads, its own
// chain layout). google/nftables could add rules to that table, but
// iptables-nft reads back only rules in its own encoding: a foreign one makes
// `iptables -S`, `iptables-save` and Docker's own `iptables -C/-D` calls fail
// on the chain ("incompatible, use 'nft' tool"). Running the same iptables
// binary Docker runs writes our rules in exactly the form Docker and the
// operator's tools expect, and works unchanged where iptables is the legacy
// backend, which no nftables library can reach at all.

// DockerUserChain is the filter chain Docker leaves to users.
const DockerUserChain = "DOCKER-USER"

// ErrNoDockerUser is returned (wrapped) when the DOCKER-USER chain is missing.
var ErrNoDockerUser = errors.New("Docker's DOCKER-USER iptables chain is missing")

const fwComment = "swarmlet cluster network"

// AllowForward makes sure DOCKER-USER accepts forwarded traffic from and to
// pool, in the caller's network namespace. owner (the node ID) goes into the
// rules' comment: nodes sharing one kernel each hold their own copy, so one
// leaving does not take the others' opening with it. It is idempotent. If
// the chain does not exist (no dockerd, or dockerd with --iptables=false) it
// returns an error wrapping ErrNoDockerUser that says what to do.
func AllowForward(pool netip.Prefix, owner string) error {
	ipt, err := iptables()
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	if ok, err := ipt.chainExists(); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("open Docker's firewall for the container pool %v: %w: is dockerd running, with its iptables rules on (the default)?", pool, ErrNoDockerUser)
	}
	for _, r := range forwardRules(pool, owner) {
		ok, err := ipt.has(r)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		// Insert at the top: Docker's chain ends in RETURN.
		if _, err := ipt.run(append([]string{"-I", DockerUserChain, "1"}, r...)...); err != nil {
			return fmt.Errorf("open Docker's firewall for the container pool %v: %w", pool, err)
		}
	}
	return nil
}

// RemoveForward deletes what AllowForward(pool, owner) added, every copy of
// it; it is idempotent and a missing chain is no error.
func RemoveForward(pool netip.Prefix, owner string) error {
	ipt, err := iptables()
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	if ok, err := ipt.chainExists(); err != nil || !ok {
		return err
	}
	for _, r := range forwardRules(pool, owner) {
		for range 16 { // -D deletes one copy; a race may have made more
			ok, err := ipt.has(r)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if _, err := ipt.run(append([]string{"-D", DockerUserChain}, r...)...); err != nil {
				return fmt.Errorf("close Docker's firewall for the container pool %v: %w", pool, err)
			}
		}
	}
	return nil
}

func forwardRules(pool netip.Prefix, owner string) [][]string {
	comment := fwComment + " node=" + owner
	return [][]string{
		{"-s", pool.String(), "-m", "comment", "--comment", comment, "-j", "ACCEPT"},
		{"-d", pool.String(), "-m", "comment", "--comment", comment, "-j", "ACCEPT"},
	}
}

func checkOwner(owner string) error {
	if owner == "" || len(owner) > 128 || strings.ContainsAny(owner, "\"\n") {
		return fmt.Errorf("firewall rule owner %q must be a node ID (1-128 characters, no quotes or newlines)", owner)
	}
	return nil
}

type iptablesCmd string

func iptables() (iptablesCmd, error) {
	p, err := exec.LookPath("iptables")
	if err != nil {
		return "", fmt.Errorf("open Docker's firewall: the iptables command is not installed (Docker needs it too): %w", err)
	}
	return iptablesCmd(p), nil
}

// run runs iptables on the filter table, waiting for the xtables lock that
// Docker's own calls take.
func (c iptablesCmd) run(args ...string) (string, error) { return c.runTable("filter", args...) }

func (c iptablesCmd) runTable(table string, args ...string) (string, error) {
	args = append([]string{"-w", "5", "-t", table}, args...)
	out, err := exec.Command(string(c), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (c iptablesCmd) chainExists() (bool, error) {
	_, err := c.run("-S", DockerUserChain)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil // "No chain/target/match by that name"
	}
	return err == nil, err
}

// has reports whether the chain holds rule (iptables -C exits 1 when not).
func (c iptablesCmd) has(rule []string) (bool, error) {
	_, err := c.run(append([]string{"-C", DockerUserChain}, rule...)...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil
	}
	return err == nil, err
}
