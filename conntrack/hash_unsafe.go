package conntrack

import (
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// tupleSize is the size of Tuple in bytes, checked in tuple_test.go.
const tupleSize = 40

// hashTuple hashes t with a per-table seed mixed in as the first 8 bytes of
// the input (xxhash.Sum64 is unseeded). Why seeded: cuckoo tables are
// sensitive to adversarial keys; an attacker who cannot predict the seed
// cannot aim floods of tuples at a few buckets. It must not allocate: the
// buffer lives on the stack.
//
// IPv4 tuples hash only their meaningful 24 bytes (seed, the two addresses,
// ports, protocol, family, zone), which takes xxhash's short-input path; the
// key comparison still uses the whole tuple.
func hashTuple(seed uint64, t *Tuple) uint64 {
	if t.Family == 4 {
		var b [24]byte
		p := unsafe.Pointer(&b[0])
		*(*uint64)(p) = seed
		*(*uint32)(unsafe.Add(p, 8)) = *(*uint32)(unsafe.Pointer(&t.Src[0]))
		*(*uint32)(unsafe.Add(p, 12)) = *(*uint32)(unsafe.Pointer(&t.Dst[0]))
		*(*uint64)(unsafe.Add(p, 16)) = *(*uint64)(unsafe.Pointer(&t.SrcPort))
		return xxhash.Sum64(b[:])
	}
	var buf [8 + tupleSize]byte
	*(*uint64)(unsafe.Pointer(&buf[0])) = seed
	*(*[tupleSize]byte)(buf[8:]) = *(*[tupleSize]byte)(unsafe.Pointer(t))
	return xxhash.Sum64(buf[:])
}

// equal compares two tuples as five 64-bit words (the == operator on a
// 40-byte struct calls runtime memequal).
func equal(a, b *Tuple) bool {
	pa, pb := (*[5]uint64)(unsafe.Pointer(a)), (*[5]uint64)(unsafe.Pointer(b))
	return pa[0] == pb[0] && pa[1] == pb[1] && pa[2] == pb[2] && pa[3] == pb[3] && pa[4] == pb[4]
}

// SymmetricHash returns a hash of t that is the same for both directions of
// a connection: the endpoints are put in a canonical order first. Workers use
// it to agree on which of them owns a connection.
func SymmetricHash(seed uint64, t *Tuple) uint64 {
	a, b := t.Src, t.Dst
	pa, pb := t.SrcPort, t.DstPort
	if less16(&b, &a) || (a == b && pb < pa) {
		a, b, pa, pb = b, a, pb, pa
	}
	c := Tuple{Src: a, Dst: b, SrcPort: pa, DstPort: pb, Proto: t.Proto, Family: t.Family, Zone: t.Zone}
	return hashTuple(seed, &c)
}

func less16(a, b *[16]byte) bool {
	pa, pb := (*[2]uint64)(unsafe.Pointer(a)), (*[2]uint64)(unsafe.Pointer(b))
	return pa[0] < pb[0] || (pa[0] == pb[0] && pa[1] < pb[1])
}

// PairHash returns a hash of t's address pair, zone and family, the same for
// both directions. Steering by it keeps every connection between two hosts
// on one worker, so an FTP data connection reaches the worker that holds
// its control connection's expectation.
func PairHash(seed uint64, t *Tuple) uint64 {
	a, b := t.Src, t.Dst
	if less16(&b, &a) {
		a, b = b, a
	}
	c := Tuple{Src: a, Dst: b, Family: t.Family, Zone: t.Zone}
	return hashTuple(seed, &c)
}
