package share

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"slices"
	"sync"
	"testing"
	"time"
)

// The benchmarks move a 64 MiB file through an in-memory store, next to the
// floor every byte pays anyway: one SHA-256 over it (Import hashes each byte
// once, Fetch verifies each byte once). share/BENCH.md has the figures.

const benchSize = 64 << 20

var benchData = sync.OnceValue(func() []byte { return randomBytes(benchSize, 64) })

func BenchmarkSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(benchSize)
	for b.Loop() {
		sha256.Sum256(data)
	}
}

func BenchmarkImport(b *testing.B) {
	data := benchData()
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Import(context.Background(), bytes.NewReader(data), newMemStore(), ImportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetch(b *testing.B) {
	data := benchData()
	root, s := importBytes(b, data, ImportOptions{})
	out := &memFile{buf: make([]byte, benchSize)}
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := Fetch(context.Background(), root, s, ToWriterAt(out), FetchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	if !bytes.Equal(out.bytes(), data) {
		b.Fatal("fetched bytes differ")
	}
}

func BenchmarkFetchOrdered(b *testing.B) {
	root, s := importBytes(b, benchData(), ImportOptions{})
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := Fetch(context.Background(), root, s, ToWriter(io.Discard), FetchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInterleaved runs the SHA-256 baseline, Import, Fetch and an
// ordered Fetch back to back in every iteration and reports the median
// rate of each and their ratios to the baseline. On a shared machine the
// load drifts between separate benchmarks; interleaving exposes all four to
// the same drift, so the ratios hold up even when the rates do not.
func BenchmarkInterleaved(b *testing.B) {
	data := benchData()
	root, s := importBytes(b, data, ImportOptions{})
	out := &memFile{buf: make([]byte, benchSize)}
	phases := []struct {
		name string
		run  func() error
		took []time.Duration
	}{
		{name: "sha256", run: func() error { sha256.Sum256(data); return nil }},
		{name: "import", run: func() error {
			_, err := Import(context.Background(), bytes.NewReader(data), newMemStore(), ImportOptions{})
			return err
		}},
		{name: "fetch", run: func() error {
			return Fetch(context.Background(), root, s, ToWriterAt(out), FetchOptions{})
		}},
		{name: "fetch-ordered", run: func() error {
			return Fetch(context.Background(), root, s, ToWriter(io.Discard), FetchOptions{})
		}},
	}
	for b.Loop() {
		for i := range phases {
			start := time.Now()
			if err := phases[i].run(); err != nil {
				b.Fatal(err)
			}
			phases[i].took = append(phases[i].took, time.Since(start))
		}
	}
	rate := func(took []time.Duration) float64 {
		slices.Sort(took)
		return benchSize / took[len(took)/2].Seconds() / 1e6
	}
	base := rate(phases[0].took)
	b.ReportMetric(base, "sha256-MB/s")
	for _, p := range phases[1:] {
		r := rate(p.took)
		b.ReportMetric(r, p.name+"-MB/s")
		b.ReportMetric(r/base, p.name+"/sha256")
	}
}
