package conntrack

import (
	"math/bits"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/dpfw/dpfw/packet"
)

// tupleSize is the size of Tuple in bytes, checked in tuple_test.go.
const tupleSize = 40

// hashTuple hashes t with a per-table seed mixed in as the first 8 bytes of
// the input (xxhash.Sum64 is unseeded). Why seeded: cuckoo tables are
// sensitive to adversarial keys; an attacker who cannot predict the seed
// cannot aim floods of tuples at a few buckets. It must not allocate.
//
// IPv4 tuples hash only their meaningful 24 bytes (seed, the two addresses,
// then ports, protocol, family and zone as one word), with xxh64 computed in
// registers (xxh24, equal to xxhash.Sum64 of those bytes: tested); the key
// comparison still uses the whole tuple. IPv6 tuples go through the library.
func hashTuple(seed uint64, t *Tuple) uint64 {
	w := (*[5]uint64)(unsafe.Pointer(t))
	if t.Family == 4 {
		return xxh24(seed, w[0]&0xffffffff|w[2]<<32, w[4])
	}
	var buf [8 + tupleSize]byte
	*(*uint64)(unsafe.Pointer(&buf[0])) = seed
	*(*[tupleSize]byte)(buf[8:]) = *(*[tupleSize]byte)(unsafe.Pointer(t))
	return xxhash.Sum64(buf[:])
}

// xxh64's primes.
const (
	xxPrime1 uint64 = 11400714785074694791
	xxPrime2 uint64 = 14029467366897019727
	xxPrime3 uint64 = 1609587929392839161
	xxPrime4 uint64 = 9650029242287828579
	xxPrime5 uint64 = 2870177450012600261
)

// xxh24 is xxhash.Sum64 of the 24 little-endian bytes of a, b and c: the
// short-input path of xxh64 (three 8-byte lanes, no tail), inlined, with the
// input in registers. The library's assembly version needs the bytes in
// memory, and building them there cost a store-forwarding stall per packet.
func xxh24(a, b, c uint64) uint64 {
	h := xxPrime5 + 24
	h ^= bits.RotateLeft64(a*xxPrime2, 31) * xxPrime1
	h = bits.RotateLeft64(h, 27)*xxPrime1 + xxPrime4
	h ^= bits.RotateLeft64(b*xxPrime2, 31) * xxPrime1
	h = bits.RotateLeft64(h, 27)*xxPrime1 + xxPrime4
	h ^= bits.RotateLeft64(c*xxPrime2, 31) * xxPrime1
	h = bits.RotateLeft64(h, 27)*xxPrime1 + xxPrime4
	h ^= h >> 33
	h *= xxPrime2
	h ^= h >> 29
	h *= xxPrime3
	h ^= h >> 32
	return h
}

// tail4 packs a tuple's last word: ports, protocol, family, zone, as they lie
// in memory (little-endian).
func tail4(sport, dport uint16, proto, family uint8, zone uint16) uint64 {
	return uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32 | uint64(family)<<40 | uint64(zone)<<48
}

// keyOf stores the tuple of a decoded IP packet in zone (TupleOf) in *k and
// returns its hash (Hash), in one pass: an IPv4 tuple is written as five
// words and hashed from registers, not read back from memory.
// Precondition: p.IsIP().
func (t *Table) keyOf(p *packet.Parsed, zone uint16, k *Tuple) uint64 {
	if p.Kind != packet.IPv4 {
		*k = TupleOf(p, zone)
		return hashTuple(t.seed, k)
	}
	var sp, dp uint16
	if hasPorts(p.Proto) {
		sp, dp = ports(p)
	}
	src := uint64(*(*uint32)(unsafe.Pointer(&p.Src[0])))
	dst := uint64(*(*uint32)(unsafe.Pointer(&p.Dst[0])))
	tail := tail4(sp, dp, p.Proto, 4, zone)
	w := (*[5]uint64)(unsafe.Pointer(k))
	w[0], w[1], w[2], w[3], w[4] = src, 0, dst, 0, tail
	return xxh24(t.seed, src|dst<<32, tail)
}

// equal compares two tuples as five 64-bit words (the == operator on a
// 40-byte struct calls runtime memequal).
func equal(a, b *Tuple) bool {
	pa, pb := (*[5]uint64)(unsafe.Pointer(a)), (*[5]uint64)(unsafe.Pointer(b))
	return pa[0] == pb[0] && pa[1] == pb[1] && pa[2] == pb[2] && pa[3] == pb[3] && pa[4] == pb[4]
}

// isReverseOf reports whether t is o reversed, comparing 64-bit words (the
// byte-array comparisons of the obvious version load 16 bytes at a time
// from a key just written as 8-byte words: a store-forwarding stall).
// Precondition: o is not an ICMP tuple (isICMPReverseOf is; holds picks).
func (t *Tuple) isReverseOf(o *Tuple) bool {
	pt, po := (*[5]uint64)(unsafe.Pointer(t)), (*[5]uint64)(unsafe.Pointer(o))
	return pt[0] == po[2] && pt[1] == po[3] && pt[2] == po[0] && pt[3] == po[1] && pt[4] == swapPorts(po[4])
}

// isICMPReverseOf is isReverseOf for ICMP tuples (the type flips to the
// reply's). Kept apart so that isReverseOf stays inlinable.
func (t *Tuple) isICMPReverseOf(o *Tuple) bool {
	pt, po := (*[5]uint64)(unsafe.Pointer(t)), (*[5]uint64)(unsafe.Pointer(o))
	return pt[0] == po[2] && pt[1] == po[3] && pt[2] == po[0] && pt[3] == po[1] && pt[4] == po[4]^icmpReplyBit<<16
}

// swapPorts returns a tuple's last word (tail4) with the ports swapped.
func swapPorts(x uint64) uint64 {
	return x&^0xffffffff | (x&0xffff)<<16 | (x>>16)&0xffff
}

// reverseTail returns a tuple's last word (tail4) with the ports swapped,
// or for ICMP the type mapped to the reply's: the last word of the reverse
// tuple (Reverse).
func reverseTail(x uint64) uint64 {
	if isICMP(uint8(x >> 32)) {
		return x ^ icmpReplyBit<<16
	}
	return swapPorts(x)
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
