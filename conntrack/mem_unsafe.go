package conntrack

import (
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeArray is memory for a pointer-free array outside the Go heap.
type hugeArray struct {
	mapping []byte // the whole mapping, for munmap; nil if heap-allocated
}

const hugePage = 2 << 20

// allocArray returns a zeroed array of n T in anonymous memory advised to use
// transparent huge pages (MADV_HUGEPAGE), falling back to the Go heap.
//
// Why: a connection table is hundreds of megabytes probed at random; with
// 4 KB pages nearly every probe also misses the TLB (measured here: the 1 M
// entry lookup benchmark was 2× slower than a Go map until the table moved to
// huge pages). This is safe only because T holds no pointers: the GC never
// needs to see this memory. The caller must call free when done.
func allocArray[T any](n int) ([]T, hugeArray) {
	var zero T
	size := int(unsafe.Sizeof(zero)) * n
	if size < hugePage/2 {
		// Small arrays stay on the Go heap; from 1 MB on (the buckets of
		// a 64 K-connection table are 1.9 MB), a huge page costs less than
		// the TLB misses of random probes.
		return make([]T, n), hugeArray{}
	}
	total := (size+hugePage-1)/hugePage*hugePage + hugePage
	m, err := unix.Mmap(-1, 0, total, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]T, n), hugeArray{}
	}
	// Align the array to a huge page boundary inside the mapping.
	off := 0
	if r := uintptr(unsafe.Pointer(&m[0])) % hugePage; r != 0 {
		off = int(hugePage - r)
	}
	_ = unix.Madvise(m[off:off+size], unix.MADV_HUGEPAGE)
	return unsafe.Slice((*T)(unsafe.Pointer(&m[off])), n), hugeArray{mapping: m}
}

func (h *hugeArray) free() {
	if h.mapping != nil {
		_ = unix.Munmap(h.mapping)
		h.mapping = nil
	}
}

// matchTags returns a bit mask with bit s set for every slot s of b whose
// tag equals tag, comparing four 16-bit tags per 64-bit word (SWAR).
func matchTags(b *bucket, tag uint16) uint32 {
	p := unsafe.Pointer(&b.tag[0])
	w0 := *(*uint64)(p)
	w1 := *(*uint64)(unsafe.Add(p, 8))
	w2 := uint64(*(*uint32)(unsafe.Add(p, 16)))
	rep := uint64(tag) * 0x0001000100010001
	return lanes(w0^rep) | lanes(w1^rep)<<4 | lanes(w2^(rep&0xffffffff))<<8&0x300
}

// firstMatch returns the first slot of b whose tag equals tag, or -1: the
// hint prefetchEntries needs, cheaper than matchTags's full mask. It uses
// the classic zero-lane test, (x - 0x0001…) &^ x & 0x8000…, which can also
// flag a lane above a zero lane (its borrow), never one below: the lowest
// flagged lane is always a true zero.
func firstMatch(b *bucket, tag uint16) int {
	const lo, hi = 0x0001000100010001, 0x8000800080008000
	p := unsafe.Pointer(&b.tag[0])
	rep := uint64(tag) * lo
	x := *(*uint64)(p) ^ rep
	if m := (x - lo) &^ x & hi; m != 0 {
		return bits.TrailingZeros64(m) >> 4
	}
	x = *(*uint64)(unsafe.Add(p, 8)) ^ rep
	if m := (x - lo) &^ x & hi; m != 0 {
		return 4 + bits.TrailingZeros64(m)>>4
	}
	// Slots 8 and 9: the upper lanes of this word are not slots.
	x = uint64(*(*uint32)(unsafe.Add(p, 16))) ^ rep
	if m := (x - lo) &^ x & (hi & 0xffffffff); m != 0 {
		return 8 + bits.TrailingZeros64(m)>>4
	}
	return -1
}

// lanes returns bit i set for each zero 16-bit lane i of x (exact: uses the
// carry-free form of the "has zero byte" trick).
func lanes(x uint64) uint32 {
	const lo7 = 0x7fff7fff7fff7fff
	y := ^(((x & lo7) + lo7) | x | lo7)
	// y has bit 15 of each zero lane set.
	return uint32((y>>15)&1 | (y>>30)&2 | (y>>45)&4 | (y>>60)&8)
}

// EventRingBytes is the memory of a worker's connection-event ring.
func EventRingBytes() int {
	return int(unsafe.Sizeof(EventRing{})) + EventRingSize*int(unsafe.Sizeof(Event{}))
}

// SyncRingBytes is the memory of a worker's sync ring (Config.Sync).
func SyncRingBytes() int {
	return int(unsafe.Sizeof(SyncRing{})) + SyncRingSize*int(unsafe.Sizeof(SyncRecord{}))
}
