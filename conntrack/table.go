package conntrack

import (
	"errors"
	"math/bits"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/internal/nocopy"
	"github.com/dpfw/dpfw/packet/header"
)

// Table geometry. A bucket is one 64-byte cache line holding bucketSlots
// slots: a 16-bit tag (from the key's hash, never 0) and a 32-bit reference
// (entry index × 2 + direction, plus 1; 0 means empty). Every key has two
// candidate buckets; a lookup reads at most those two lines plus the entry.
const (
	bucketSlots = 10
	// maxLoad is the bucket fill at full capacity (keys / slots). With 10
	// slots per bucket and a BFS displacement search, bucketized cuckoo
	// tables reach 98%, but inserts into a full table (every SYN of a
	// flood, after its early drop) then cost 0.7 displacements each and
	// twice the time; at 90% they cost 0.16, for 126 instead of 125 bytes
	// per connection (BenchmarkTrackSYN, perf/RESULTS.md).
	maxLoad = 0.90
	// bfsNodes bounds the breadth-first search for a displacement path.
	bfsNodes = 256
	// maxEntries bounds a table so that refs fit in 31 bits.
	maxEntries = 1 << 30
)

type bucket struct {
	tag [bucketSlots]uint16
	ref [bucketSlots]uint32
	_   [64 - bucketSlots*6]byte
}

// Dir is a packet's direction relative to its connection.
type Dir uint8

// Directions.
const (
	Original Dir = 0
	Reply    Dir = 1
)

func (d Dir) String() string {
	if d == Original {
		return "original"
	}
	return "reply"
}

// Table is a fixed-capacity bucketized cuckoo hash from tuples to connection
// entries, indexing both directions of each connection. It is owned by one
// worker and is not safe for concurrent use; it never allocates after New.
type Table struct {
	noCopy nocopy.NoCopy
	seed   uint64
	bkts   []bucket
	mem    [5]hugeArray
	// acct[i] counts entry i's packets and bytes (nil: accounting off);
	// start[i] is when it was created (nil: timestamps off).
	acct  []Acct
	start []int64
	nb    uint64 // len(bkts)
	conns []Conn
	// wins[i] is the TCP window data of entry i.
	wins []tcpstate.Windows
	// freeHead is 1 + the first free entry; free entries chain through
	// their master field (1 + next free, 0 at the end), so the free list
	// costs no memory of its own.
	freeHead uint32
	used     int

	// addrs is the prefetch steps' scratch: the lines of a group of keys.
	addrs [3*PrefetchGroup + 1]uintptr

	// BFS scratch for insertions, preallocated.
	bfsBucket [bfsNodes]uint32
	bfsSlot   [bfsNodes]int8
	bfsParent [bfsNodes]int16
	// kickRand is a xorshift state for choosing BFS expansion order.
	kickRand uint64

	// Stats counts table events.
	Stats TableStats
}

// TableStats are a table's event counters, updated by its owner.
type TableStats struct {
	Inserts uint64
	// InsertFailures found no displacement path: the flow was not
	// tracked. Kicks are keys moved to make room.
	InsertFailures uint64 `stat:"insert_failures_total,counter" help:"Insertions that found no free slot within the displacement bound."`
	Deletes        uint64
	Kicks          uint64 `stat:"displacements_total,counter" help:"Keys moved to make room (cuckoo displacements)."`
}

// ErrTableFull is returned by Insert when no entry is free.
var ErrTableFull = errors.New("conntrack: table full")

// ErrNoSlot is returned by Insert when no displacement path was found.
var ErrNoSlot = errors.New("conntrack: no free slot within the displacement bound")

// NewTable returns a table of capacity connections, hashing with seed (a
// one-time random value chosen at start-up and immutable afterwards).
func NewTable(capacity int, seed uint64) *Table {
	capacity = max(capacity, 1)
	if capacity > maxEntries {
		capacity = maxEntries
	}
	nb := uint64(numBuckets(capacity))
	t := &Table{seed: seed, nb: nb, kickRand: seed | 1}
	t.bkts, t.mem[0] = allocArray[bucket](int(nb))
	t.conns, t.mem[1] = allocArray[Conn](capacity)
	t.wins, t.mem[2] = allocArray[tcpstate.Windows](capacity)
	for i := range t.conns {
		if i+1 < capacity {
			t.conns[i].master = uint32(i + 2)
		}
	}
	t.freeHead = 1
	return t
}

func numBuckets(capacity int) int { return int(float64(2*capacity)/(bucketSlots*maxLoad)) + 1 }

// TableBytes returns the memory a table of capacity connections takes.
func TableBytes(capacity int) int {
	return numBuckets(capacity)*64 + capacity*(connSize+winSize)
}

// Free releases the table's memory. The table must not be used afterwards.
func (t *Table) Free() {
	t.bkts, t.conns, t.wins, t.acct, t.start = nil, nil, nil, nil, nil
	for i := range t.mem {
		t.mem[i].free()
	}
}

// Cap returns the number of connections the table holds at most.
func (t *Table) Cap() int { return len(t.conns) }

// Len returns the number of connections in the table.
func (t *Table) Len() int { return t.used }

// MemoryBytes returns the table's memory: buckets and entries.
func (t *Table) MemoryBytes() int {
	return len(t.bkts)*64 + len(t.conns)*(connSize+winSize)
}

// Conn returns entry i. Precondition: i was returned by Lookup or Insert and
// the entry has not been deleted since.
func (t *Table) Conn(i uint32) *Conn { return &t.conns[i] }

// keyHash splits a hash into the two candidate buckets and the tag, from
// disjoint bits: b1 from the top bits (h × nb / 2^64), b2 from bits 47…16,
// the tag from bits 15…0. The tag must not depend on the bucket: an earlier
// version took both from the top bits, so every key in a bucket carried the
// same tag and each probe fetched up to ten entries.
func (t *Table) keyHash(h uint64) (b1, b2 uint64, tag uint16) {
	b1, _ = bits.Mul64(h, t.nb)
	b2, _ = bits.Mul64(bits.RotateLeft64(h, 16), t.nb)
	return b1, b2, uint16(h) | 1
}

// Hash returns the hash of a tuple, to be passed to LookupHash and the
// prefetch steps. Computing the hashes of a burst first lets the buckets be
// prefetched before the lookups.
func (t *Table) Hash(k *Tuple) uint64 { return hashTuple(t.seed, k) }

// Prefetching. A lookup at millions of connections misses the cache twice:
// on its bucket and on its entry. The misses of a burst overlap when their
// loads start early, and the work between a prefetch and the load that needs
// its line is what hides it. On the reference machine (perf/RESULTS.md) the
// memory system keeps only about ten misses in flight: a prefetch issued
// beyond that waits for one to finish, holding back the work behind it, so
// 32 prefetches in a row cost about 32 × 10 ns before anything else
// proceeds, while a few at a time, interleaved with other work, cost
// nothing once that work takes longer than the misses. Hence steps that a
// caller spreads over its own per-packet loops, a few keys (PrefetchGroup)
// at a time:
//
//	prefetchBuckets(hashes)                as the keys are hashed
//	prefetchEntries(keys, hashes, hints)   later, after other work
//	prefetchSecond(keys, hashes, hints)    if prefetchEntries left hints at 0
//	lookupHint(k, h, hint)                 last, when the entries have arrived
//
// prefetchBurst does the same over a burst at once, for tests.

// PrefetchGroup is how many keys a caller should pass to each prefetch step
// at a time, between other work: fewer than the misses the memory system
// keeps in flight. The steps take longer slices a group at a time.
const PrefetchGroup = 8

// prefetchBurst runs the prefetch steps over a burst of keys whose hashes
// are given, one step for the whole burst at a time, storing each key's
// hint for lookupHint in hints.
func (t *Table) prefetchBurst(keys []Tuple, hashes []uint64, hints []uint32) {
	t.prefetchBuckets(hashes)
	if t.prefetchEntries(keys, hashes, hints) {
		t.prefetchSecond(keys, hashes, hints)
	}
}

// prefetchBuckets starts loading the first candidate bucket of every hash
// (where most keys are: a key goes to its second bucket only when the first
// is full).
func (t *Table) prefetchBuckets(hashes []uint64) {
	addrs := &t.addrs
	for len(hashes) > 0 {
		chunk := hashes[:min(len(hashes), PrefetchGroup)]
		hashes = hashes[len(chunk):]
		for i, h := range chunk {
			b1, _, _ := t.keyHash(h)
			addrs[i] = uintptr(unsafe.Pointer(&t.bkts[b1]))
		}
		prefetch(&addrs[0], len(chunk))
	}
}

// prefetchEntries reads the first candidate bucket of each key (keys[i]
// has hash hashes[i]; prefetchBuckets should have started loading the
// buckets) and stores in hints[i] the reference of the first slot whose tag
// matches, the hint for lookupHint, and starts loading that slot's entry,
// and for a TCP key its window data. For a key with no match in its first
// bucket it stores 0, starts loading the second bucket and returns true:
// the caller should then call prefetchSecond, later.
func (t *Table) prefetchEntries(keys []Tuple, hashes []uint64, hints []uint32) (second bool) {
	addrs := &t.addrs
	for len(hashes) > 0 {
		c := min(len(hashes), PrefetchGroup)
		n := 0
		for i, h := range hashes[:c] {
			b1, b2, tag := t.keyHash(h)
			var found bool
			if n, found = t.hintFrom(&t.bkts[b1], tag, &keys[i], &hints[i], n); !found {
				hints[i] = 0
				second = true
				addrs[n] = uintptr(unsafe.Pointer(&t.bkts[b2]))
				n++
			}
		}
		prefetch(&addrs[0], n)
		keys, hashes, hints = keys[c:], hashes[c:], hints[c:]
	}
	return second
}

// prefetchSecond is prefetchEntries for the second candidate bucket of the
// keys prefetchEntries left with a hint of 0. A key found in neither bucket
// is probably a new connection: its insertion will place the reply key in
// that key's first bucket and take the first free entry, and both start
// loading instead.
func (t *Table) prefetchSecond(keys []Tuple, hashes []uint64, hints []uint32) {
	addrs := &t.addrs
	for len(hashes) > 0 {
		c := min(len(hashes), PrefetchGroup)
		n := 0
		newFlow := false
		for i, h := range hashes[:c] {
			if hints[i] != 0 {
				continue
			}
			_, b2, tag := t.keyHash(h)
			var found bool
			if n, found = t.hintFrom(&t.bkts[b2], tag, &keys[i], &hints[i], n); !found {
				rb, _, _ := t.keyHash(t.reverseHash(&keys[i]))
				addrs[n] = uintptr(unsafe.Pointer(&t.bkts[rb]))
				n++
				newFlow = true
			}
		}
		if newFlow && t.freeHead != 0 {
			addrs[n] = uintptr(unsafe.Pointer(&t.conns[t.freeHead-1]))
			n++
		}
		prefetch(&addrs[0], n)
		keys, hashes, hints = keys[c:], hashes[c:], hints[c:]
	}
}

// hintFrom looks for key k's tag in bucket b. If a slot matches, it stores
// the slot's reference in *hint, adds the lines of its entry to t.addrs[n:]
// (entryLines) and returns the new n and true.
func (t *Table) hintFrom(b *bucket, tag uint16, k *Tuple, hint *uint32, n int) (int, bool) {
	s := firstMatch(b, tag)
	if s < 0 {
		return n, false
	}
	*hint = b.ref[s]
	return t.entryLines(k, *hint, n), true
}

// entryLines adds to t.addrs[n:] the line of the entry slot reference r (a
// matching tag's slot: never empty, as tags are never 0) stands for, and
// for a TCP key the lines of its window data. It returns the new n.
func (t *Table) entryLines(k *Tuple, r uint32, n int) int {
	addrs := &t.addrs
	e := (r - 1) >> 1
	addrs[n] = uintptr(unsafe.Pointer(&t.conns[e]))
	n++
	if k.Proto == header.ProtoTCP {
		w := uintptr(unsafe.Pointer(&t.wins[e]))
		addrs[n], addrs[n+1] = w, w+winSize-1
		n += 2
	}
	return n
}

// reverseHash returns the hash of k reversed (the reply key of a connection
// whose original key is k).
func (t *Table) reverseHash(k *Tuple) uint64 {
	if k.Family == 4 {
		w := (*[5]uint64)(unsafe.Pointer(k))
		return xxh24(t.seed, w[2]&0xffffffff|w[0]<<32, reverseTail(w[4]))
	}
	r := k.Reverse()
	return hashTuple(t.seed, &r)
}

// lookupHint is LookupHash with the hint prefetchEntries or prefetchSecond
// gave for the key: when the hinted entry holds the key, that is the
// answer, without probing the buckets again. A stale hint (the table
// changed since) costs one comparison: the entry is in use and holds the
// key, or the buckets are probed as usual.
func (t *Table) lookupHint(k *Tuple, h uint64, hint uint32) (idx uint32, dir Dir, ok bool) {
	if hint != 0 {
		if i, d, ok := t.holds(hint, k); ok {
			return i, d, true
		}
	}
	return t.LookupHash(k, h)
}

// Lookup finds the connection k belongs to. It returns the entry index and
// the direction of k, and ok == false if there is none.
func (t *Table) Lookup(k *Tuple) (idx uint32, dir Dir, ok bool) {
	return t.LookupHash(k, hashTuple(t.seed, k))
}

// LookupHash is Lookup with the key's hash precomputed by Hash.
func (t *Table) LookupHash(k *Tuple, h uint64) (idx uint32, dir Dir, ok bool) {
	b1, b2, tag := t.keyHash(h)
	if i, d, ok := t.findIn(&t.bkts[b1], k, tag); ok {
		return i, d, true
	}
	return t.findIn(&t.bkts[b2], k, tag)
}

func (t *Table) findIn(b *bucket, k *Tuple, tag uint16) (uint32, Dir, bool) {
	for m := matchTags(b, tag); m != 0; m &= m - 1 {
		if r := b.ref[bits.TrailingZeros32(m)]; r != 0 {
			if i, d, ok := t.holds(r, k); ok {
				return i, d, true
			}
		}
	}
	return 0, 0, false
}

// holds reports whether slot reference r (non-zero) stands for key k, and
// which entry and direction that is. The entry's tuple is compared, not
// only the tag; an entry not in use never matches (a stale hint may point
// at one).
func (t *Table) holds(r uint32, k *Tuple) (uint32, Dir, bool) {
	i, d := (r-1)>>1, Dir((r-1)&1)
	c := &t.conns[i]
	if c.flags&flagUsed == 0 {
		return 0, 0, false
	}
	if d == Original {
		return i, d, equal(&c.Orig, k)
	}
	if isICMP(c.Orig.Proto) {
		return i, d, k.isICMPReverseOf(&c.Orig)
	}
	return i, d, k.isReverseOf(&c.Orig)
}

// Insert adds a connection whose original direction is orig, indexing both
// directions, and returns its entry, zeroed except for Orig. It fails with
// ErrTableFull when no entry is free (the caller may evict and retry) and
// with ErrNoSlot when the buckets have no room within the displacement bound.
// Precondition: no connection with either direction of orig exists.
func (t *Table) Insert(orig *Tuple) (uint32, error) {
	return t.InsertHash(orig, hashTuple(t.seed, orig))
}

// InsertHash is Insert for a tuple whose hash (Hash) the caller has.
func (t *Table) InsertHash(orig *Tuple, h uint64) (uint32, error) {
	if t.freeHead == 0 {
		return 0, ErrTableFull
	}
	idx := t.freeHead - 1
	c := &t.conns[idx]
	next := c.master
	// The tuple must be in place before the keys: placing the reply key may
	// displace the original one, and displacement recomputes a key from its
	// entry.
	*c = Conn{Orig: *orig}
	rev := orig.Reverse()
	if !t.addKey(orig, h, idx<<1|uint32(Original)+1) {
		c.master = next
		t.Stats.InsertFailures++
		return 0, ErrNoSlot
	}
	if !t.addKey(&rev, t.reverseHash(orig), idx<<1|uint32(Reply)+1) {
		t.removeKey(orig, idx<<1|uint32(Original)+1)
		c.master = next
		t.Stats.InsertFailures++
		return 0, ErrNoSlot
	}
	t.freeHead = next
	t.used++
	t.Stats.Inserts++
	c.flags = flagUsed
	return idx, nil
}

// Delete removes entry i. Precondition: i is in use.
func (t *Table) Delete(i uint32) {
	c := &t.conns[i]
	if c.flags&flagUsed == 0 {
		return
	}
	rev := c.Orig.Reverse()
	t.removeKey(&c.Orig, i<<1|uint32(Original)+1)
	t.removeKey(&rev, i<<1|uint32(Reply)+1)
	*c = Conn{master: t.freeHead}
	t.freeHead = i + 1
	t.used--
	t.Stats.Deletes++
}

func (t *Table) removeKey(k *Tuple, ref uint32) {
	b1, b2, _ := t.keyHash(hashTuple(t.seed, k))
	for _, b := range [2]uint64{b1, b2} {
		bk := &t.bkts[b]
		for s := range bk.ref {
			if bk.ref[s] == ref {
				bk.ref[s], bk.tag[s] = 0, 0
				return
			}
		}
	}
}

// refKey returns the key a slot reference stands for.
func (t *Table) refKey(ref uint32) Tuple {
	c := &t.conns[(ref-1)>>1]
	if (ref-1)&1 == uint32(Reply) {
		return c.Orig.Reverse()
	}
	return c.Orig
}

func freeSlot(b *bucket) int {
	for s := range b.ref {
		if b.ref[s] == 0 {
			return s
		}
	}
	return -1
}

// addKey places a key, displacing others along a breadth-first path of at
// most bfsNodes nodes if both candidate buckets are full (bucketized cuckoo
// hashing with BFS, as in MemC3 / libcuckoo). It reports false, changing
// nothing, if no path exists within the bound.
func (t *Table) addKey(k *Tuple, h uint64, ref uint32) bool {
	b1, b2, tag := t.keyHash(h)
	for _, b := range [2]uint64{b1, b2} {
		if s := freeSlot(&t.bkts[b]); s >= 0 {
			t.bkts[b].tag[s], t.bkts[b].ref[s] = tag, ref
			return true
		}
	}
	// BFS over buckets: node n is a bucket reached by moving the key in
	// (parent bucket, slot) to its other candidate.
	n := 0
	t.bfsBucket[0], t.bfsParent[0], t.bfsSlot[0] = uint32(b1), -1, -1
	t.bfsBucket[1], t.bfsParent[1], t.bfsSlot[1] = uint32(b2), -1, -1
	n = 2
	for head := 0; head < n && n < bfsNodes; head++ {
		b := &t.bkts[t.bfsBucket[head]]
		start := int(t.nextRand() % bucketSlots)
		for j := 0; j < bucketSlots && n < bfsNodes; j++ {
			s := (start + j) % bucketSlots
			other := t.altBucket(uint64(t.bfsBucket[head]), b.ref[s])
			if t.onPath(head, uint32(other)) {
				// A path through the same bucket twice could move one
				// slot twice and strand a key.
				continue
			}
			t.bfsBucket[n], t.bfsParent[n], t.bfsSlot[n] = uint32(other), int16(head), int8(s)
			if fs := freeSlot(&t.bkts[other]); fs >= 0 {
				t.applyPath(n, fs)
				b0 := &t.bkts[t.bfsBucket[t.rootOf(n)]]
				// The root bucket now has a free slot where the path started.
				s0 := freeSlot(b0)
				b0.tag[s0], b0.ref[s0] = tag, ref
				return true
			}
			n++
		}
	}
	return false
}

// onPath reports whether bucket b is node n or one of its ancestors, or
// either root (the two roots are both candidates of the new key).
func (t *Table) onPath(n int, b uint32) bool {
	if b == t.bfsBucket[0] || b == t.bfsBucket[1] {
		return true
	}
	for ; n >= 0; n = int(t.bfsParent[n]) {
		if t.bfsBucket[n] == b {
			return true
		}
	}
	return false
}

func (t *Table) rootOf(n int) int {
	for t.bfsParent[n] >= 0 {
		n = int(t.bfsParent[n])
	}
	return n
}

// applyPath moves keys along the BFS path ending at node n, whose bucket has
// free slot fs, from the end back to the root.
func (t *Table) applyPath(n, fs int) {
	for t.bfsParent[n] >= 0 {
		p := int(t.bfsParent[n])
		src := &t.bkts[t.bfsBucket[p]]
		dst := &t.bkts[t.bfsBucket[n]]
		s := int(t.bfsSlot[n])
		dst.tag[fs], dst.ref[fs] = src.tag[s], src.ref[s]
		src.tag[s], src.ref[s] = 0, 0
		t.Stats.Kicks++
		n, fs = p, s
	}
}

// altBucket returns the other candidate bucket of the key in slot ref, which
// currently sits in bucket cur.
func (t *Table) altBucket(cur uint64, ref uint32) uint64 {
	k := t.refKey(ref)
	b1, b2, _ := t.keyHash(hashTuple(t.seed, &k))
	if b1 == cur {
		return b2
	}
	return b1
}

func (t *Table) nextRand() uint64 {
	x := t.kickRand
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	t.kickRand = x
	return x
}

// candidates calls f for each entry referenced from the candidate buckets
// of the key whose hash is h (to pick an early-drop victim). f returns
// false to stop.
func (t *Table) candidates(h uint64, f func(idx uint32) bool) {
	b1, b2, _ := t.keyHash(h)
	for _, b := range [2]uint64{b1, b2} {
		bk := &t.bkts[b]
		for s := range bk.ref {
			if bk.ref[s] != 0 && !f((bk.ref[s]-1)>>1) {
				return
			}
		}
	}
}
