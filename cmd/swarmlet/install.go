package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// `swarmlet install init|join FLAGS...` makes the daemon a systemd service, so
// a node on a VM comes back after a reboot or a crash. Stopping the service
// stops only the daemon (KillMode=process): its tasks keep running, as CLI.md
// promises, and the daemon adopts them when it starts again.

const unitName = "swarmlet.service"

type installOpts struct {
	unitDir   string // where the unit goes
	configDir string // where the join token goes (a file only root reads)
	bin       string // the binary ExecStart runs
	noEnable  bool
	print     bool
}

func newInstallCmd() *cobra.Command {
	var o installOpts
	c := &cobra.Command{
		Use:   "install [--unit-dir DIR] [--bin PATH] [--no-enable] init|join [FLAGS...]",
		Short: "Install the daemon as a systemd service started with these init or join flags, and enable it",
		Long: "Writes " + unitName + " (ExecStart: swarmlet init|join with the flags given; Restart=always; KillMode=process, so\n" +
			"stopping the daemon leaves its tasks running) and, where systemd runs, enables and starts it. A join token goes\n" +
			"into a root-only environment file, not into the world-readable unit.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return install(c, o, args)
		},
	}
	f := c.Flags()
	// Everything after init|join is that command's own flags.
	f.SetInterspersed(false)
	f.StringVar(&o.unitDir, "unit-dir", "/etc/systemd/system", "directory the unit file is written to")
	f.StringVar(&o.configDir, "config-dir", "/etc/swarmlet", "directory of the root-only file that holds a join token")
	f.StringVar(&o.bin, "bin", "", "path of the swarmlet binary the service runs (default: this one)")
	f.BoolVar(&o.noEnable, "no-enable", false, "write the files only; do not enable or start the service")
	f.BoolVar(&o.print, "print", false, "print the unit instead of writing anything")
	return c
}

func newUninstallCmd() *cobra.Command {
	var o installOpts
	c := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and disable the systemd service and remove its files (tasks keep running; 'swarmlet leave' stops them)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			out := c.OutOrStdout()
			unit := filepath.Join(o.unitDir, unitName)
			if _, err := os.Stat(unit); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s is not installed (no %s)", unitName, unit)
			}
			if o.unitDir == "/etc/systemd/system" && systemdRunning() {
				if err := systemctl(out, "disable", "--now", unitName); err != nil {
					return err
				}
			}
			for _, p := range []string{unit, filepath.Join(o.configDir, "swarmlet.env")} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove %s: %w", p, err)
				}
			}
			if o.unitDir == "/etc/systemd/system" && systemdRunning() {
				if err := systemctl(out, "daemon-reload"); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "Removed %s. The node's data dir and its tasks are left as they were: 'swarmlet leave' stops its tasks and takes it out of the cluster.\n", unit)
			return nil
		},
	}
	c.Flags().StringVar(&o.unitDir, "unit-dir", "/etc/systemd/system", "directory the unit file is in")
	c.Flags().StringVar(&o.configDir, "config-dir", "/etc/swarmlet", "directory of the file that holds a join token")
	return c
}

func install(c *cobra.Command, o installOpts, args []string) error {
	verb, flags := args[0], args[1:]
	var daemon *cobra.Command
	switch verb {
	case "init":
		daemon = newInitCmd()
	case "join":
		daemon = newJoinCmd()
	default:
		return fmt.Errorf("install: the first argument must be init or join, not %q (e.g. swarmlet install join --token T 10.0.0.1)", verb)
	}
	// The flags are checked here, as init or join would check them, so a typo
	// fails now rather than in a restart loop at boot.
	daemon.SetArgs(flags)
	if err := daemon.ParseFlags(flags); err != nil {
		return fmt.Errorf("install %s: %v", verb, err)
	}
	if err := daemon.ValidateArgs(daemon.Flags().Args()); err != nil {
		return fmt.Errorf("install %s: %v", verb, err)
	}
	if verb == "join" && !daemon.Flags().Changed("token") {
		return fmt.Errorf("install join: --token is required (get one with 'swarmlet join-token worker' on a manager)")
	}
	bin := o.bin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("install: find this binary: %w (give --bin)", err)
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("install: --bin %q must be an absolute path", bin)
	}
	envFile := filepath.Join(o.configDir, "swarmlet.env")
	unit, token := unitFile(bin, verb, flags, envFile)
	out := c.OutOrStdout()
	if o.print {
		_, err := io.WriteString(out, unit)
		return err
	}
	if token != "" {
		if err := os.MkdirAll(o.configDir, 0o700); err != nil {
			return fmt.Errorf("install: %w", err)
		}
		if err := writeFileAtomic(envFile, []byte("SWARMLET_TOKEN="+token+"\n"), 0o600); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	path := filepath.Join(o.unitDir, unitName)
	if err := os.MkdirAll(o.unitDir, 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := writeFileAtomic(path, []byte(unit), 0o644); err != nil {
		return fmt.Errorf("install: %w (are you root?)", err)
	}
	fmt.Fprintf(out, "Wrote %s.\n", path)
	switch {
	case o.noEnable:
		fmt.Fprintf(out, "To start it now and at every boot, run:\n\n    systemctl daemon-reload && systemctl enable --now %s\n", unitName)
	case o.unitDir != "/etc/systemd/system":
		fmt.Fprintf(out, "Not enabled: %s is not systemd's directory. Link or copy the unit there, then run:\n\n    systemctl daemon-reload && systemctl enable --now %s\n", o.unitDir, unitName)
	case !systemdRunning():
		fmt.Fprintf(out, "systemd is not running here, so nothing was started. Where it runs, start the node with:\n\n    systemctl daemon-reload && systemctl enable --now %s\n", unitName)
	default:
		if err := systemctl(out, "daemon-reload"); err != nil {
			return err
		}
		if err := systemctl(out, "enable", "--now", unitName); err != nil {
			return err
		}
		fmt.Fprintf(out, "Enabled and started %s; follow it with: journalctl -u swarmlet -f\n", unitName)
	}
	return nil
}

// unitFile is the unit for `swarmlet VERB FLAGS...`. A --token value moves to
// the environment file (returned for the caller to write) and ExecStart names
// it as ${SWARMLET_TOKEN}.
func unitFile(bin, verb string, flags []string, envFile string) (unit, token string) {
	args := []string{systemdQuote(bin), verb}
	for i := 0; i < len(flags); i++ {
		a := flags[i]
		switch {
		case a == "--token" && i+1 < len(flags):
			token = flags[i+1]
			args = append(args, "--token", "${SWARMLET_TOKEN}")
			i++
		case strings.HasPrefix(a, "--token="):
			token = strings.TrimPrefix(a, "--token=")
			args = append(args, "--token=${SWARMLET_TOKEN}")
		default:
			args = append(args, systemdQuote(a))
		}
	}
	var b strings.Builder
	b.WriteString(`[Unit]
Description=swarmlet node: container orchestrator daemon
Wants=network-online.target
After=network-online.target docker.service

[Service]
Type=simple
`)
	if token != "" {
		fmt.Fprintf(&b, "EnvironmentFile=%s\n", systemdQuote(envFile))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(args, " "))
	b.WriteString(`Restart=always
RestartSec=2
# Stopping or restarting the daemon must not stop the node's tasks: they run on,
# and the daemon adopts them when it is back ('swarmlet leave' stops them).
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec=30
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`)
	return b.String(), token
}

// systemdQuote writes one ExecStart word: plain when it can be, else in double
// quotes with systemd's escapes; % and $ are doubled so they stay literal.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

func systemdRunning() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

func systemctl(out io.Writer, args ...string) error {
	cmd := exec.Command("systemctl", args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
