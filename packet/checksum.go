package packet

import (
	"encoding/binary"
	"math/bits"

	"github.com/dpfw/dpfw/packet/header"
)

// Checksum hints: what the NIC's receive checksum offload said about a
// frame (DPDK's RTE_MBUF_F_RX_{IP,L4}_CKSUM_{GOOD,BAD} flags). With
// neither bit of a layer set, that layer's checksum is unknown.
const (
	CsumIPGood uint8 = 1 << iota
	CsumIPBad
	CsumL4Good
	CsumL4Bad
)

// DPDK's mbuf ol_flags bits for receive checksums (rte_mbuf_core.h).
const (
	olL4Bad  = 1 << 3
	olIPBad  = 1 << 4
	olIPGood = 1 << 7
	olL4Good = 1 << 8
)

// CsumHint converts an mbuf's ol_flags to checksum hints. "None" (both
// bits: the data is intact though the field is not filled in) counts as
// good.
func CsumHint(olFlags uint64) uint8 {
	var h uint8
	switch olFlags & (olIPBad | olIPGood) {
	case olIPGood, olIPBad | olIPGood:
		h |= CsumIPGood
	case olIPBad:
		h |= CsumIPBad
	}
	switch olFlags & (olL4Bad | olL4Good) {
	case olL4Good, olL4Bad | olL4Good:
		h |= CsumL4Good
	case olL4Bad:
		h |= CsumL4Bad
	}
	return h
}

// ChecksumOK reports whether p's IPv4 header checksum and its TCP, UDP,
// ICMP or ICMPv6 checksum are right. What hint says is taken as is; what
// it leaves unknown is computed when software is set, and assumed right
// otherwise. Fragments carry only part of the datagram their L4 checksum
// covers, so only their IPv4 header is checked. An IPv6 packet with
// extension headers whose checksum fails is given the benefit of the doubt
// (a routing header changes the destination the checksum is computed
// with). p must be IPv4 or IPv6. It never allocates.
func ChecksumOK(p *Parsed, hint uint8, software bool) bool {
	if hint&(CsumIPBad|CsumL4Bad) != 0 {
		return hint&CsumIPBad == 0 && (hint&CsumL4Bad == 0 || p.Frag != 0)
	}
	if !software {
		return true
	}
	// The sums are taken in the machine's byte order: a one's-complement
	// sum only comes out byte-swapped (RFC 1071, 2(B)), and the value a
	// correct packet sums to, 0xffff, is its own swap. Values given in
	// network order (protocol, length) are swapped going in.
	b := p.Buf
	if hint == 0 && p.Kind == IPv4 && p.Frag == 0 && p.L4Off == p.L3Off+20 &&
		(p.Proto == header.ProtoUDP || p.Proto == header.ProtoTCP) {
		// The usual case, with nothing known from the NIC: an
		// options-free IPv4 datagram carrying TCP or UDP, checked
		// without the general case's branches and without calls but
		// SumWords (the helpers inline; measured: a call to a shared
		// IPv4 L4 helper here costs 10–15% of ChecksumOK).
		d := b[p.L3Off:p.L3End]
		if !header.Verifies(ipv4HeaderSum(d)) {
			return false
		}
		l4 := d[20:]
		return noUDPChecksum(l4, p.Proto) ||
			header.Verifies(header.SumWords(l4, pseudoSum(binary.LittleEndian.Uint64(d[12:]), p.Proto, len(l4))))
	}
	if p.Kind == IPv4 && hint&CsumIPGood == 0 {
		h := b[p.L3Off:p.L4Off] // the decoder puts L4Off where IHL says
		var acc uint64
		if len(h) == 20 {
			acc = ipv4HeaderSum(h) // no options: no loop
		} else {
			acc = header.SumWords(h, 0)
		}
		if !header.Verifies(acc) {
			return false
		}
	}
	if p.Frag != 0 || hint&CsumL4Good != 0 {
		return true
	}
	l4 := b[p.L4Off:p.L3End]
	switch p.Proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoICMPv6:
		if p.Kind == IPv4 {
			return noUDPChecksum(l4, p.Proto) ||
				header.Verifies(header.SumWords(l4, pseudoSum(binary.LittleEndian.Uint64(b[p.L3Off+12:p.L3Off+20]), p.Proto, len(l4))))
		}
		if header.Verifies(header.SumWords(l4, pseudoSum(header.SumWords(b[p.L3Off+8:p.L3Off+40], 0), p.Proto, len(l4)))) {
			return true
		}
		// An IPv6 routing header makes the checksum use its final
		// destination.
		return p.L4Off != p.L3Off+40
	case header.ProtoICMP:
		return header.Verifies(header.SumWords(l4, 0))
	}
	return true
}

// ipv4HeaderSum returns the SumWords sum of the first 20 bytes of h (an IPv4
// header without options), as five words, without a loop.
func ipv4HeaderSum(h []byte) uint64 {
	return header.AddWords(header.AddWords(binary.LittleEndian.Uint64(h), binary.LittleEndian.Uint64(h[8:])),
		uint64(binary.LittleEndian.Uint32(h[16:20])))
}

// pseudoSum adds the rest of a TCP/UDP/ICMPv6 pseudo-header, protocol and
// L4 length (network order, hence swapped), to addrs, the sum of its
// addresses.
func pseudoSum(addrs uint64, proto uint8, l4len int) uint64 {
	return header.AddWords(addrs, uint64(proto)<<8+uint64(bits.ReverseBytes16(uint16(l4len))))
}

// noUDPChecksum reports an IPv4 UDP datagram l4 without a checksum (0, RFC
// 768). Only IPv4 callers ask: IPv6 UDP must have one.
func noUDPChecksum(l4 []byte, proto uint8) bool {
	return proto == header.ProtoUDP && binary.NativeEndian.Uint16(l4[6:]) == 0
}

// DatagramChecksumOK reports whether a reassembled datagram's TCP, UDP,
// ICMP or ICMPv6 checksum is right, as netfilter checks the datagram
// nf_defrag built. first is the decode of its first fragment (whole L4
// header), sum the SumWords sum of its L4 bytes (each fragment's, added
// with AddWords: fragments start at even offsets), l4len their count. As
// ChecksumOK, an IPv6 datagram with extension headers besides the fragment
// header is given the benefit of the doubt.
func DatagramChecksumOK(first *Parsed, sum uint64, l4len int) bool {
	b := first.Buf
	switch first.Proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoICMPv6:
	case header.ProtoICMP:
		return first.Kind != IPv4 || header.Verifies(sum)
	default:
		return true
	}
	if first.Kind == IPv4 {
		if first.Proto == header.ProtoICMPv6 {
			return true
		}
		return noUDPChecksum(b[first.L4Off:first.L3End], first.Proto) ||
			header.Verifies(header.AddWords(sum, pseudoSum(binary.LittleEndian.Uint64(b[first.L3Off+12:first.L3Off+20]), first.Proto, l4len)))
	}
	if header.Verifies(header.AddWords(sum, pseudoSum(header.SumWords(b[first.L3Off+8:first.L3Off+40], 0), first.Proto, l4len))) {
		return true
	}
	return first.L4Off != first.L3Off+40+header.IPv6FragmentSize
}
