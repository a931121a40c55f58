package blocks

import (
	"slices"
	"sort"

	"github.com/ipfs/go-cid"
)

// entry is what the store remembers of one block on disk.
type entry struct {
	key  Key
	cid  cid.Cid // the CID it was put under; names its file
	size int64
	// seq tells two lives of one key apart: a Get that found the block
	// damaged or missing drops the entry only if it is still the one it read,
	// not a good copy put again meanwhile.
	seq uint64
}

// index is the in-memory ordered set of stored keys, one sorted slice per
// first byte of the key. Keys are SHA-256 outputs and spread evenly over that
// byte, so an insert moves about n/256 entries instead of n, and Range finds
// its start with one binary search. The buckets match the shard directories
// on disk, which makes building it at Open a sort per directory.
type index struct {
	buckets [256][]entry
	count   int
}

// find returns k's entry and whether it is there.
func (x *index) find(k Key) (entry, bool) {
	b := x.buckets[k[0]]
	i, ok := slices.BinarySearchFunc(b, k, cmpEntryKey)
	if !ok {
		return entry{}, false
	}
	return b[i], true
}

// insert adds e; the caller has checked that its key is absent.
func (x *index) insert(e entry) {
	b := x.buckets[e.key[0]]
	i, _ := slices.BinarySearchFunc(b, e.key, cmpEntryKey)
	x.buckets[e.key[0]] = slices.Insert(b, i, e)
	x.count++
}

// remove drops the entry for k if there is one.
func (x *index) remove(k Key) {
	b := x.buckets[k[0]]
	if i, ok := slices.BinarySearchFunc(b, k, cmpEntryKey); ok {
		x.buckets[k[0]] = slices.Delete(b, i, i+1)
		x.count--
	}
}

// after is the position in bucket b of the first key greater than k.
func after(b []entry, k Key) int {
	return sort.Search(len(b), func(i int) bool { return b[i].key.Cmp(k) > 0 })
}

func cmpEntryKey(e entry, k Key) int { return e.key.Cmp(k) }
