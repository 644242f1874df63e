package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSystemdQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"--data-dir", "--data-dir"},
		{"/var/lib/swarmlet", "/var/lib/swarmlet"},
		{"my host", `"my host"`},
		{`a"b`, `"a\"b"`},
		{`back\slash`, `"back\\slash"`},
		{"100%", "100%%"},
		{"$HOME", "$$HOME"},
		{"", `""`},
	} {
		if got := systemdQuote(tc.in); got != tc.want {
			t.Errorf("systemdQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestUnitFileKeepsTheTokenOut(t *testing.T) {
	unit, token := unitFile("/usr/local/bin/swarmlet", "join", []string{"--token", "SWLT-1-abc-def", "--hostname", "web 1", "10.0.0.1:4240"}, "/etc/swarmlet/swarmlet.env")
	if token != "SWLT-1-abc-def" || strings.Contains(unit, "SWLT-1") {
		t.Fatalf("token %q; unit:\n%s", token, unit)
	}
	for _, want := range []string{
		"EnvironmentFile=/etc/swarmlet/swarmlet.env\n",
		`ExecStart=/usr/local/bin/swarmlet join --token ${SWARMLET_TOKEN} --hostname "web 1" 10.0.0.1:4240` + "\n",
		"Restart=always\n", "KillMode=process\n", "WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
}

// TestInstallUnitVerifies writes the unit through the binary into a temp dir (no
// systemd is started) and has systemd-analyze check it; uninstall removes it.
func TestInstallUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("needs systemd-analyze (apt-get install systemd): not installed")
	}
	dir := t.TempDir()
	unitDir, confDir := filepath.Join(dir, "system"), filepath.Join(dir, "etc")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(swarmletBin, args...).CombinedOutput()
		return string(out), err
	}
	out, err := run("install", "--unit-dir", unitDir, "--config-dir", confDir, "--bin", swarmletBin,
		"join", "--token", "SWLT-1-0123-secret", "--advertise-addr", "192.0.2.10", "--data-dir", "/var/lib/swarmlet", "--engine", "docker", "192.0.2.1")
	if err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	if !strings.Contains(out, "systemctl daemon-reload && systemctl enable --now swarmlet.service") {
		t.Fatalf("install did not say how to enable the unit: %s", out)
	}
	unitPath := filepath.Join(unitDir, "swarmlet.service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+swarmletBin+" join --token ${SWARMLET_TOKEN} --advertise-addr 192.0.2.10 --data-dir /var/lib/swarmlet --engine docker 192.0.2.1\n") ||
		!strings.Contains(string(unit), "KillMode=process") || strings.Contains(string(unit), "secret") {
		t.Fatalf("unit:\n%s", unit)
	}
	env := filepath.Join(confDir, "swarmlet.env")
	if st, err := os.Stat(env); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	if b, _ := os.ReadFile(env); string(b) != "SWARMLET_TOKEN=SWLT-1-0123-secret\n" {
		t.Fatalf("token file holds %q", b)
	}
	vout, err := exec.Command(analyze, "verify", unitPath).CombinedOutput()
	if err != nil || strings.TrimSpace(string(vout)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, vout, unit)
	}

	// The same for init, and --print writes nothing.
	printed, err := run("install", "--print", "--bin", "/usr/local/bin/swarmlet", "init", "--advertise-addr", "192.0.2.10")
	if err != nil || !strings.Contains(printed, "ExecStart=/usr/local/bin/swarmlet init --advertise-addr 192.0.2.10\n") || strings.Contains(printed, "EnvironmentFile") {
		t.Fatalf("install --print: %v\n%s", err, printed)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "--unit-dir", unitDir, "frobnicate"}, "must be init or join"},
		{[]string{"install", "--unit-dir", unitDir, "init", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"install", "--unit-dir", unitDir, "join", "192.0.2.1"}, "--token is required"},
		{[]string{"install", "--unit-dir", unitDir, "join", "--token", "T"}, "accepts 1 arg"},
		{[]string{"install", "--unit-dir", unitDir, "--bin", "swarmlet", "init"}, "must be an absolute path"},
	} {
		out, err := run(bad.args...)
		if err == nil || !strings.Contains(out, bad.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: %v %q, want one line with %q", bad.args, err, out, bad.want)
		}
	}

	if out, err := run("uninstall", "--unit-dir", unitDir, "--config-dir", confDir); err != nil || !strings.Contains(out, "swarmlet leave") {
		t.Fatalf("uninstall: %v: %s", err, out)
	}
	for _, p := range []string{unitPath, env} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if out, err := run("uninstall", "--unit-dir", unitDir); err == nil || !strings.Contains(out, "not installed") {
		t.Errorf("second uninstall: %v %s", err, out)
	}
}
