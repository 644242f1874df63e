package bed

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRestartEngine: a host's dockerd restarted as an engine upgrade does. With
// live-restore its container keeps running (the same one, answering throughout
// from another host); without, dockerd stops it on the way down.
func TestRestartEngine(t *testing.T) {
	requireBed(t)
	ensureImage(t)
	for _, tc := range []struct {
		name string
		live bool
		want string // the container's state after the restart
	}{
		{"live-restore", true, "running"},
		{"no live-restore", false, "exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			b, err := New(ctx, Options{Hosts: 2, Log: testLog(t), LiveRestore: tc.live})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Error(err)
				}
				if left := Leftovers(b.ID); len(left) > 0 {
					t.Errorf("bed %s left behind:\n%s", b.ID, strings.Join(left, "\n"))
				}
			})
			h1, h2 := b.Host(1), b.Host(2)
			if err := h1.LoadImage(ctx, testImage); err != nil {
				t.Fatal(err)
			}
			id, err := h1.Docker(ctx, "run", "-d", "-p", "8080:80", testImage)
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + h1.Addr.String() + ":8080/"
			waitFetch(t, h2, url, 20*time.Second)
			// A client on the other host meanwhile: the longest time it got no answer.
			stop, gapc := make(chan struct{}), make(chan time.Duration, 1)
			go func() {
				last, gap := time.Now(), time.Duration(0)
				for {
					select {
					case <-stop:
						gapc <- max(gap, time.Since(last))
						return
					default:
					}
					if _, err := fetch(h2, url, time.Second); err == nil {
						gap, last = max(gap, time.Since(last)), time.Now()
					}
				}
			}()
			away, err := h1.RestartEngine(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.live {
				waitFetch(t, h2, url, 20*time.Second)
			}
			close(stop)
			t.Logf("dockerd away for %v; its container's published port did not answer for %v", away.Round(time.Millisecond), (<-gapc).Round(time.Millisecond))
			state, err := h1.Docker(ctx, "inspect", "-f", "{{.State.Status}}", strings.TrimSpace(id))
			if err != nil || strings.TrimSpace(state) != tc.want {
				t.Fatalf("container after the restart: %q %v, want %s", state, err, tc.want)
			}
		})
	}
}
