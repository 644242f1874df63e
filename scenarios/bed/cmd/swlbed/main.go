// Command swlbed brings up a multi-host test bed by hand (see scenarios/bed):
//
//	go run ./scenarios/bed/cmd/swlbed up -n 3 [-load IMAGE]...   # stays up until Ctrl-C or `swlbed down`
//	go run ./scenarios/bed/cmd/swlbed down                        # tears down every bed `up` made, and dead leftovers
//	go run ./scenarios/bed/cmd/swlbed ls                          # beds on this machine
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/swarmlet/swarmlet/scenarios/bed"
)

// label marks the beds this command made, so `down` stops those and never a
// test's.
const label = "swlbed up"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+err.Error())
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: swlbed up [-n HOSTS] [-load IMAGE]... | down | ls")
	}
	switch args[0] {
	case "up":
		return up(args[1:])
	case "down":
		return down()
	case "ls":
		return ls()
	default:
		return fmt.Errorf("unknown command %q: want up, down or ls", args[0])
	}
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	n := fs.Int("n", 3, "number of hosts")
	var images []string
	fs.Func("load", "image to copy from the machine's engine into every host (repeatable)", func(s string) error {
		images = append(images, s)
		return nil
	})
	verbose := fs.Bool("v", false, "log what the bed does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Ctrl-C during bring-up cancels it; New then removes what it made.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	b, err := bed.New(ctx, bed.Options{Hosts: *n, Label: label, Log: log})
	if err != nil {
		return err
	}
	upTook := time.Since(start)
	defer func() {
		start := time.Now()
		if err := b.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "Error: "+err.Error())
			return
		}
		fmt.Printf("bed %s torn down in %s\n", b.ID, time.Since(start).Round(time.Millisecond))
	}()
	for _, img := range images {
		for _, h := range b.Hosts {
			start := time.Now()
			if err := h.LoadImage(ctx, img); err != nil {
				return err
			}
			fmt.Printf("%s loaded into %s in %s\n", img, h.Name, time.Since(start).Round(time.Millisecond))
		}
	}

	fmt.Printf("bed %s: %d hosts on %s, up in %s (switch namespace %s, files in %s)\n\n",
		b.ID, len(b.Hosts), bed.Subnet, upTook.Round(time.Millisecond), b.Switch, b.Dir)
	for _, h := range b.Hosts {
		fmt.Printf("%s  %-12s namespace %s  docker0 in %s\n", h.Name, h.Addr, h.NS, h.DockerPool)
		fmt.Printf("    export DOCKER_HOST=%s\n", h.DockerHost)
		fmt.Printf("    nsenter --net=%s env DOCKER_HOST=%s bash\n", h.NSPath(), h.DockerHost)
	}
	fmt.Printf("\nCut host 2 off by hand (every frame to and from it dropped at the switch):\n")
	fmt.Printf("    nsenter --net=/run/netns/%s nft add rule bridge swlbed forward iifname h2 drop\n", b.Switch)
	fmt.Printf("    nsenter --net=/run/netns/%s nft add rule bridge swlbed forward oifname h2 drop\n", b.Switch)
	fmt.Printf("    nsenter --net=/run/netns/%s nft flush chain bridge swlbed forward    # heal\n", b.Switch)
	fmt.Printf("\nUp until Ctrl-C or `swlbed down` (make bed-down).\n")
	<-ctx.Done()
	return nil
}

// down asks every live `swlbed up` to tear its bed down, waits for it, then
// sweeps what dead owners left.
func down() error {
	beds, err := bed.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range beds {
		if !b.Alive || b.Owner.Label != label {
			continue
		}
		if err := syscall.Kill(b.Owner.Pid, syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Errorf("bed %s: signal its owner %d: %w", b.ID, b.Owner.Pid, err))
			continue
		}
		if err := waitGone(b.Dir, 60*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("bed %s: %w", b.ID, err))
			continue
		}
		fmt.Printf("bed %s down (owner pid %d)\n", b.ID, b.Owner.Pid)
	}
	swept, err := bed.Sweep(nil)
	for _, id := range swept {
		fmt.Printf("bed %s swept (its owner was gone)\n", id)
	}
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func waitGone(dir string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still there after %s", dir, max)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ls() error {
	beds, err := bed.List()
	if err != nil {
		return err
	}
	if len(beds) == 0 {
		fmt.Println("no beds")
		return nil
	}
	fmt.Printf("%-8s %-6s %-8s %-6s %-22s %s\n", "BED", "HOSTS", "OWNER", "ALIVE", "CREATED", "LABEL")
	for _, b := range beds {
		fmt.Printf("%-8s %-6d %-8d %-6t %-22s %s\n", b.ID, b.Owner.Hosts, b.Owner.Pid, b.Alive,
			b.Owner.Created.Local().Format("2006-01-02 15:04:05"), b.Owner.Label)
	}
	return nil
}
