// Package merkle reconciles two sets of 32-byte keys over an arc of the
// ring by exchanging summaries of key ranges, as Dynamo and DHash compare
// replicas: each side hashes its keys in a range; equal hashes end the
// comparison there, different ones split the range and compare the parts,
// and once a differing range holds few keys the other side lists them. Two
// sets in sync cost one hash; n differences cost about
// n·log(size/n) hashes plus the differing keys.
//
// The tree is implicit: ranges split into Fanout equal arcs of key space,
// so both sides agree on every node's bounds without sending them, and no
// tree is kept between rounds (a summary is one pass over the keys in a
// range, which the caller's sorted store lists cheaply).
//
// It knows nothing of the ring or the network: keys are 32 bytes ordered as
// unsigned integers, and the remote side is a function.
package merkle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// Key is a position on the ring, big-endian.
type Key [32]byte

// Range is the arc (Lo, Hi] of the ring, wrapping past 2^256-1 to 0 when
// Lo >= Hi; Lo == Hi is the whole circle.
type Range struct{ Lo, Hi Key }

// Contains reports whether k is on the arc.
func (r Range) Contains(k Key) bool {
	lo, hi := bytes.Compare(k[:], r.Lo[:]), bytes.Compare(k[:], r.Hi[:])
	switch c := bytes.Compare(r.Lo[:], r.Hi[:]); {
	case c < 0:
		return lo > 0 && hi <= 0
	case c > 0:
		return lo > 0 || hi <= 0
	}
	return true
}

var ringSize = new(big.Int).Lsh(big.NewInt(1), 256)

// width is the number of keys on the arc.
func (r Range) width() *big.Int {
	w := new(big.Int).Sub(new(big.Int).SetBytes(r.Hi[:]), new(big.Int).SetBytes(r.Lo[:]))
	if w.Sign() <= 0 {
		w.Add(w, ringSize)
	}
	return w
}

// Split cuts the arc into n consecutive arcs of (nearly) equal width, in ring
// order. An arc narrower than n keys cannot be split: it is returned whole.
func (r Range) Split(n int) []Range {
	w := r.width()
	if w.Cmp(big.NewInt(int64(n))) < 0 {
		return []Range{r}
	}
	lo := new(big.Int).SetBytes(r.Lo[:])
	out := make([]Range, n)
	prev := r.Lo
	for i := 1; i <= n; i++ {
		var hi Key
		if i == n {
			hi = r.Hi
		} else {
			b := new(big.Int).Mul(w, big.NewInt(int64(i)))
			b.Div(b, big.NewInt(int64(n)))
			b.Add(b, lo)
			b.Mod(b, ringSize)
			b.FillBytes(hi[:])
		}
		out[i-1] = Range{prev, hi}
		prev = hi
	}
	return out
}

// Item is a key and what the caller needs to act on it (for a block store,
// the CID it was stored under). Only keys are summarized.
type Item struct {
	Key Key
	Val []byte
}

// Source lists a set's items on an arc in ring order, starting just after
// Lo, until fn returns false.
type Source interface {
	Each(r Range, fn func(Item) bool)
}

// KeySource is a Source that can also list only the keys, cheaper when
// its values are made for each call (a block store's CIDs as bytes):
// summaries need no more.
type KeySource interface {
	Source
	EachKey(r Range, fn func(Key) bool)
}

// Summary is a set's digest of one range: SHA-256 over its keys in ring
// order, and their number. An empty range has the zero hash.
type Summary struct {
	Hash  [32]byte
	Count int
}

// Summarize digests src's keys on r.
func Summarize(src Source, r Range) Summary {
	h := sha256.New()
	var s Summary
	add := func(k Key) bool {
		h.Write(k[:])
		s.Count++
		return true
	}
	if ks, ok := src.(KeySource); ok {
		ks.EachKey(r, add)
	} else {
		src.Each(r, func(it Item) bool { return add(it.Key) })
	}
	if s.Count > 0 {
		h.Sum(s.Hash[:0])
	}
	return s
}

// Query asks the other side about one range, giving this side's summary.
type Query struct {
	Range   Range
	Summary Summary
}

// Disjoint reports whether no two of the queries' ranges share a key, as
// in every batch Reconcile sends: a batch holds parts of differing ranges,
// never a range and one of its parts. The side answering refuses other
// batches, since every range costs it a pass over its keys.
func Disjoint(qs []Query) bool {
	if len(qs) < 2 {
		return true
	}
	rs := make([]Range, len(qs))
	for i, q := range qs {
		rs[i] = q.Range
	}
	slices.SortFunc(rs, func(a, b Range) int { return bytes.Compare(a.Hi[:], b.Hi[:]) })
	// Sorted by their ends, disjoint arcs each lie between the end of
	// the one before (cyclically) and their own.
	for i, r := range rs {
		prev := rs[(i+len(rs)-1)%len(rs)]
		if prev.Hi == r.Hi || r.Contains(prev.Hi) {
			return false
		}
	}
	return true
}

// Answer is the other side's reply to one Query: Match if its summary is
// the same; else its count, and its items when there are at most the leaf
// size of them.
type Answer struct {
	Match bool
	Count int
	// Listed says Items is the other side's whole content of the range
	// (possibly empty).
	Listed bool
	Items  []Item
}

// Answers is how src answers queries: a list of the items of each range
// that differs and holds at most leaf keys.
func Answers(src Source, qs []Query, leaf int) []Answer {
	out := make([]Answer, len(qs))
	for i, q := range qs {
		s := Summarize(src, q.Range)
		if s == q.Summary {
			out[i] = Answer{Match: true, Count: s.Count}
			continue
		}
		out[i] = Answer{Count: s.Count}
		if s.Count <= leaf {
			out[i].Listed = true
			src.Each(q.Range, func(it Item) bool {
				out[i].Items = append(out[i].Items, it)
				return true
			})
		}
	}
	return out
}

// Exchange sends a batch of queries to the other side and returns its
// answers, one per query, in order.
type Exchange func(ctx context.Context, qs []Query) ([]Answer, error)

// Options bound a reconciliation.
type Options struct {
	// Fanout is how many parts a differing range splits into.
	Fanout int
	// Leaf is the most items the other side lists for a range; above it
	// the range is split instead. The other side must use the same value.
	Leaf int
	// Batch is the most queries per exchange.
	Batch int
	// MaxDepth bounds the splits: an honest set of SHA-256 keys never
	// needs many, a peer claiming a dense range of keys would.
	MaxDepth int
}

// DefaultOptions suit a few thousand to a few million keys per arc.
func DefaultOptions() Options { return Options{Fanout: 16, Leaf: 64, Batch: 256, MaxDepth: 40} }

// Diff is what a reconciliation found.
type Diff struct {
	// OnlyLocal are the local items the other side lacks; OnlyRemote the
	// other side's items this side lacks, as it listed them.
	OnlyLocal, OnlyRemote []Item
	// Exchanges and Queries count the round trips and ranges compared.
	Exchanges, Queries int
}

// ErrBadAnswer: the other side's answer breaks the protocol (a wrong
// number of answers, a listed item outside its range or out of order, more
// items than the leaf size, a range that keeps differing past MaxDepth).
var ErrBadAnswer = errors.New("bad range answer")

// Reconcile compares local's keys on r with the other side's through ex
// and returns the differences.
func Reconcile(ctx context.Context, local Source, r Range, ex Exchange, opt Options) (Diff, error) {
	var d Diff
	pending := []Range{r}
	for depth := 0; len(pending) > 0; depth++ {
		if depth > opt.MaxDepth {
			return d, fmt.Errorf("%w: ranges still differ after %d splits", ErrBadAnswer, opt.MaxDepth)
		}
		var next []Range
		for len(pending) > 0 {
			batch := pending[:min(len(pending), opt.Batch)]
			pending = pending[len(batch):]
			qs := make([]Query, len(batch))
			for i, br := range batch {
				qs[i] = Query{Range: br, Summary: Summarize(local, br)}
			}
			as, err := ex(ctx, qs)
			d.Exchanges++
			d.Queries += len(qs)
			if err != nil {
				return d, err
			}
			if len(as) != len(qs) {
				return d, fmt.Errorf("%w: %d answers to %d queries", ErrBadAnswer, len(as), len(qs))
			}
			for i, a := range as {
				switch {
				case a.Match:
				case a.Listed:
					if err := d.compare(local, qs[i].Range, a.Items, opt.Leaf); err != nil {
						return d, err
					}
				default:
					next = append(next, qs[i].Range.Split(opt.Fanout)...)
				}
			}
		}
		pending = next
	}
	return d, nil
}

// compare merges local's items on r with the listed remote ones, both in
// ring order, recording what each side lacks.
func (d *Diff) compare(local Source, r Range, remote []Item, leaf int) error {
	if len(remote) > leaf {
		return fmt.Errorf("%w: %d items listed, the leaf size is %d", ErrBadAnswer, len(remote), leaf)
	}
	for i, it := range remote {
		if !r.Contains(it.Key) {
			return fmt.Errorf("%w: listed key %x outside its range", ErrBadAnswer, it.Key)
		}
		if i > 0 && !after(r, remote[i-1].Key, it.Key) {
			return fmt.Errorf("%w: listed keys out of ring order", ErrBadAnswer)
		}
	}
	j := 0
	local.Each(r, func(it Item) bool {
		for j < len(remote) && after(r, remote[j].Key, it.Key) {
			d.OnlyRemote = append(d.OnlyRemote, remote[j])
			j++
		}
		if j < len(remote) && remote[j].Key == it.Key {
			j++
		} else {
			d.OnlyLocal = append(d.OnlyLocal, it)
		}
		return true
	})
	d.OnlyRemote = append(d.OnlyRemote, remote[j:]...)
	return nil
}

// after reports whether b comes after a on r, walking from r.Lo.
func after(r Range, a, b Key) bool {
	// Shift both by -Lo: ring order from Lo becomes plain order.
	return offset(r.Lo, a).Cmp(offset(r.Lo, b)) < 0
}

func offset(lo, k Key) *big.Int {
	o := new(big.Int).Sub(new(big.Int).SetBytes(k[:]), new(big.Int).SetBytes(lo[:]))
	if o.Sign() < 0 {
		o.Add(o, ringSize)
	}
	return o
}

// Sorted is a Source over items kept in a slice sorted by key: for tests
// and for callers whose keys are already in memory.
type Sorted []Item

// Each lists the items on r in ring order.
func (s Sorted) Each(r Range, fn func(Item) bool) {
	first := func(k Key) int { // index of the first item with key > k
		lo, hi := 0, len(s)
		for lo < hi {
			m := (lo + hi) / 2
			if bytes.Compare(s[m].Key[:], k[:]) > 0 {
				hi = m
			} else {
				lo = m + 1
			}
		}
		return lo
	}
	emit := func(items []Item) bool {
		for _, it := range items {
			if !fn(it) {
				return false
			}
		}
		return true
	}
	i, j := first(r.Lo), first(r.Hi)
	if bytes.Compare(r.Lo[:], r.Hi[:]) < 0 {
		emit(s[i:j])
		return
	}
	if emit(s[i:]) {
		emit(s[:j])
	}
}
