package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// artifactsDir is where tests leave files for a person to look at:
// $SWARMLET_TEST_ARTIFACTS if set, else the test's temp dir.
func artifactsDir(t *testing.T) string {
	if d := os.Getenv("SWARMLET_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestDashboard opens the dashboard of a real cluster in headless Chromium: it
// shows the nodes and services, follows a scale within a second, shows the
// service's logs when tapped, and leaves screenshots (desktop and phone).
func TestDashboard(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("needs Chromium (apt-get install chromium): not installed")
	}
	c := newCluster(t, opsNet)
	c.start(1, "")
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
	waitFor(t, 10*time.Second, "2 nodes", func() bool {
		ns, err := c.nodes(1)
		return err == nil && len(ns) == 2
	})
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "2", "-p", "80", whoamiBin)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	// The API answers only mutual TLS on TCP: a browser reaches the dashboard
	// through 'swarmlet proxy', which speaks for the operator on the socket.
	url := "http://" + startProxy(t, c, 1) + "/ui/"
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`#nodes .node[data-host="node1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#nodes .node[data-host="node2"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#services tr.svc[data-name="web"]`)),
	); err != nil {
		t.Fatalf("dashboard at %s: %v", url, err)
	}
	eval := func(js string) string {
		out, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return out
	}
	waitPage := func(d time.Duration, what, js, want string) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			if got := eval(js); got == want {
				return time.Since(start)
			} else if time.Since(start) > d {
				t.Fatalf("page: %s: got %q, want %q after %s", what, got, want, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	const replicas = `document.querySelector('tr.svc[data-name="web"] .rep').textContent`
	const cards = `String(document.querySelectorAll('#grid .task[data-service="web"]').length)`
	waitPage(10*time.Second, "web at 2/2", replicas, "2/2")
	waitPage(5*time.Second, "2 task cards", cards, "2")
	if got := eval(`document.querySelector('.node[data-host="node1"] .badge.leader') ? "yes" : "no"`); got != "yes" {
		t.Fatal("node1 is not shown as the leader")
	}

	c.mustCLI(1, "service", "scale", "--detach", "web=5")
	seen := waitPage(time.Second, "the scale within a second", `document.querySelector('tr.svc[data-name="web"] .rep').textContent.split("/")[1]`, "5")
	t.Logf("the page showed the new desired count %s after the scale was applied", seen.Round(time.Millisecond))
	waitPage(20*time.Second, "web at 5/5", replicas, "5/5")
	waitPage(5*time.Second, "5 task cards", cards, "5")
	waitPage(5*time.Second, "the scale in the event feed", `String([...document.querySelectorAll('#events li b')].some(b => b.textContent === "service scale"))`, "true")

	// Tapping a service shows its logs.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#services tr.svc[data-name="web"]`))); err != nil {
		t.Fatal(err)
	}
	waitPage(10*time.Second, "web's logs", `String(document.querySelector('#logs').textContent.includes("listening"))`, "true")

	dir := artifactsDir(t)
	shoot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	shoot("dashboard-desktop.png")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	waitPage(5*time.Second, "the phone layout", `String(document.documentElement.scrollWidth <= 390)`, "true")
	shoot("dashboard-phone.png")
}

// startProxy runs 'swarmlet proxy' against node i's socket on a free loopback
// port and returns its address; it stops with the test.
func startProxy(t *testing.T, c *cluster, i int) string {
	t.Helper()
	cmd := exec.Command(swarmletBin, "--host", c.sock(i), "proxy", "--listen", c.ip(250)+":0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("swarmlet proxy: %v", err)
	}
	// "Serving the API on http://ADDR/ and ..."
	f := strings.Fields(line)
	if len(f) < 5 {
		t.Fatalf("swarmlet proxy said %q", line)
	}
	return strings.TrimSuffix(strings.TrimPrefix(f[4], "http://"), "/")
}
