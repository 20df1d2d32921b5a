package packet

import (
	"encoding/binary"
	"math/bits"

	"github.com/dpfw/dpfw/dataplane/header"
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
		return ipv4L4OK(b[p.L3Off:p.L3End], p.Proto)
	}
	if p.Kind == IPv4 && hint&CsumIPGood == 0 {
		var acc uint64
		if h := b[p.L3Off:]; h[0] == 0x45 && len(h) >= 20 {
			// No options, the usual case: five words, no loop.
			acc = header.AddWords(header.AddWords(binary.LittleEndian.Uint64(h), binary.LittleEndian.Uint64(h[8:])),
				uint64(binary.LittleEndian.Uint32(h[16:])))
		} else {
			acc = header.SumWords(h[:int(h[0]&0x0f)*4], 0)
		}
		if !header.Verifies(acc) {
			return false
		}
	}
	if p.Frag != 0 || hint&CsumL4Good != 0 {
		return true
	}
	var acc uint64
	switch p.Proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoICMPv6:
		l4len := p.L3End - p.L4Off
		if p.Proto == header.ProtoUDP && p.Kind == IPv4 && binary.NativeEndian.Uint16(b[p.L4Off+6:]) == 0 {
			return true // IPv4 UDP without a checksum
		}
		if p.Kind == IPv4 {
			acc = binary.LittleEndian.Uint64(b[p.L3Off+12 : p.L3Off+20]) // both addresses
		} else {
			acc = header.SumWords(b[p.L3Off+8:p.L3Off+40], 0)
		}
		acc = header.AddWords(acc, uint64(p.Proto)<<8+uint64(bits.ReverseBytes16(l4len)))
	case header.ProtoICMP:
	default:
		return true
	}
	if header.Verifies(header.SumWords(b[p.L4Off:p.L3End], acc)) {
		return true
	}
	// An IPv6 routing header makes the checksum use its final destination.
	return p.Kind == IPv6 && p.L4Off != p.L3Off+40
}

// ipv4L4OK is ChecksumOK for the usual case, with nothing known from the
// NIC: dgram is an IPv4 datagram without options or fragmentation carrying
// TCP or UDP (proto).
func ipv4L4OK(dgram []byte, proto uint8) bool {
	if len(dgram) < 28 {
		return false // the decoder never passes one (UDP needs 8 bytes, TCP 20)
	}
	w1 := binary.LittleEndian.Uint64(dgram[8:])
	if !header.Verifies(header.AddWords(header.AddWords(binary.LittleEndian.Uint64(dgram), w1),
		uint64(binary.LittleEndian.Uint32(dgram[16:])))) {
		return false
	}
	if proto == header.ProtoUDP && binary.NativeEndian.Uint16(dgram[26:]) == 0 {
		return true // IPv4 UDP without a checksum
	}
	// Pseudo-header: both addresses (bytes 12…19), protocol, L4 length.
	l4 := dgram[20:]
	acc := header.AddWords(binary.LittleEndian.Uint64(dgram[12:]), uint64(proto)<<8+uint64(bits.ReverseBytes16(uint16(len(l4)))))
	return header.Verifies(header.SumWords(l4, acc))
}
