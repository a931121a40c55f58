package share

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"sync"
	"testing"
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
