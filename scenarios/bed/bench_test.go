package bed

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkBed measures a bed's life: bring-up and teardown of 3 hosts (each
// with its own containerd and dockerd), and loading the test image into one.
//
//	go test -run '^$' -bench Bed -benchtime 5x ./scenarios/bed/
func BenchmarkBed(b *testing.B) {
	if err := Check(); err != nil {
		b.Skip(err)
	}
	b.Run("up-down-3", func(b *testing.B) {
		var up, down time.Duration
		for b.Loop() {
			start := time.Now()
			bed, err := New(context.Background(), Options{Hosts: 3})
			if err != nil {
				b.Fatal(err)
			}
			up += time.Since(start)
			start = time.Now()
			if err := bed.Close(); err != nil {
				b.Fatal(err)
			}
			down += time.Since(start)
		}
		b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "ms-up/op")
		b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "ms-down/op")
	})
	b.Run("load-image", func(b *testing.B) {
		bed, err := New(context.Background(), Options{Hosts: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer bed.Close()
		h := bed.Host(1)
		for b.Loop() {
			if err := h.LoadImage(context.Background(), testImage); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if _, err := h.Docker(context.Background(), "image", "rm", testImage); err != nil {
				b.Fatal(fmt.Errorf("remove it for the next round: %w", err))
			}
			b.StartTimer()
		}
	})
}
