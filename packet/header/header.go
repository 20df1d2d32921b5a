package header

import (
	"encoding/binary"
	"math/bits"
)

// EtherType values.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100 // IEEE 802.1Q
	EtherTypeQinQ = 0x88a8 // IEEE 802.1ad
	EtherTypeIPv6 = 0x86dd
)

// IP protocol numbers.
const (
	ProtoHopOpts  = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDstOpts  = 60
	ProtoSCTP     = 132
)

// 0                   1                   2                   3
// 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |          Destination MAC (6)          |     Source MAC (6)    |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |   EtherType   |
const (
	ethDst       = 0
	ethSrc       = 6
	ethType      = 12
	EthernetSize = 14
	VLANSize     = 4
)

// Ethernet is an Ethernet II header view. Valid iff len >= EthernetSize.
type Ethernet []byte

// Type returns the EtherType (or TPID of the first tag).
func (b Ethernet) Type() uint16 { return binary.BigEndian.Uint16(b[ethType:]) }

// Src returns the source MAC.
func (b Ethernet) Src() []byte { return b[ethSrc : ethSrc+6] }

// Dst returns the destination MAC.
func (b Ethernet) Dst() []byte { return b[ethDst : ethDst+6] }

//	0                   1                   2                   3
//	0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |Version|  IHL  |Type of Service|          Total Length         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |         Identification        |Flags|      Fragment Offset    |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Time to Live |    Protocol   |         Header Checksum       |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                       Source Address                          |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                    Destination Address                        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	RFC 791, figure 4
const (
	ipv4VerIHL    = 0
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Proto     = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16
	IPv4MinSize   = 20

	ipv4MF         = 0x2000
	ipv4FragOffMsk = 0x1fff
)

// IPv4 is an IPv4 header view. Validate with IsValid before using accessors.
type IPv4 []byte

// IsValid reports whether b holds a whole IPv4 header of version 4 whose
// header length and total length fit in b, and whose options are well formed.
func (b IPv4) IsValid() bool {
	if len(b) < IPv4MinSize || b[ipv4VerIHL]>>4 != 4 {
		return false
	}
	hl := b.HeaderLen()
	tl := int(b.TotalLen())
	if hl < IPv4MinSize || hl > len(b) || tl < hl || tl > len(b) {
		return false
	}
	return ipv4OptionsValid(b[IPv4MinSize:hl])
}

// ipv4OptionsValid walks the options: every option other than EOL and NOP has
// a length byte of at least 2 that stays inside the header (RFC 791 §3.1).
func ipv4OptionsValid(o []byte) bool {
	for i := 0; i < len(o); {
		switch o[i] {
		case 0: // end of option list
			return true
		case 1: // no-op
			i++
		default:
			if i+1 >= len(o) {
				return false
			}
			l := int(o[i+1])
			if l < 2 || i+l > len(o) {
				return false
			}
			i += l
		}
	}
	return true
}

// HeaderLen returns the header length in bytes (IHL × 4).
func (b IPv4) HeaderLen() int { return int(b[ipv4VerIHL]&0xf) * 4 }

// TotalLen returns the total length field.
func (b IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// More reports whether the more-fragments flag is set.
func (b IPv4) More() bool { return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4MF != 0 }

// FragOffset returns the fragment offset in bytes.
func (b IPv4) FragOffset() uint16 {
	return (binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) & ipv4FragOffMsk) * 8
}

// TTL returns the time to live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the protocol field.
func (b IPv4) Protocol() uint8 { return b[ipv4Proto] }

// Src returns the source address bytes.
func (b IPv4) Src() []byte { return b[ipv4Src : ipv4Src+4] }

// Dst returns the destination address bytes.
func (b IPv4) Dst() []byte { return b[ipv4Dst : ipv4Dst+4] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |Version| Traffic Class |           Flow Label                  |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |         Payload Length        |  Next Header  |   Hop Limit   |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                 Source Address (16)                           |
// |                 Destination Address (16)                      |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	RFC 8200, section 3
const (
	ipv6PayloadLen = 4
	ipv6NextHdr    = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24
	IPv6Size       = 40
)

// IPv6 is an IPv6 fixed header view. Valid iff len >= IPv6Size and the
// version is 6 (IsValid).
type IPv6 []byte

// IsValid reports whether b holds a version-6 fixed header whose payload
// length fits in b.
func (b IPv6) IsValid() bool {
	return len(b) >= IPv6Size && b[0]>>4 == 6 && IPv6Size+int(b.PayloadLen()) <= len(b)
}

// PayloadLen returns the payload length field.
func (b IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }

// NextHeader returns the next header field.
func (b IPv6) NextHeader() uint8 { return b[ipv6NextHdr] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[ipv6HopLimit] }

// Src returns the source address bytes.
func (b IPv6) Src() []byte { return b[ipv6Src : ipv6Src+16] }

// Dst returns the destination address bytes.
func (b IPv6) Dst() []byte { return b[ipv6Dst : ipv6Dst+16] }

// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                         Identification                        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	RFC 8200, section 4.5
const (
	IPv6FragmentSize = 8
)

// IPv6Fragment is an IPv6 fragment extension header view.
// Valid iff len >= IPv6FragmentSize.
type IPv6Fragment []byte

// NextHeader returns the next header field.
func (b IPv6Fragment) NextHeader() uint8 { return b[0] }

// FragOffset returns the fragment offset in bytes.
func (b IPv6Fragment) FragOffset() uint16 { return binary.BigEndian.Uint16(b[2:]) &^ 7 }

// More reports whether the M flag is set.
func (b IPv6Fragment) More() bool { return b[3]&1 != 0 }

// ID returns the identification field.
func (b IPv6Fragment) ID() uint32 { return binary.BigEndian.Uint32(b[4:]) }

// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |          Source Port          |       Destination Port        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                        Sequence Number                        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                    Acknowledgment Number                      |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Data |     |N|C|E|U|A|P|R|S|F|                               |
// | Offset| Rsv |S|W|C|R|C|S|S|Y|I|            Window             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           Checksum            |         Urgent Pointer        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	RFC 9293, section 3.1
const (
	tcpSrcPort  = 0
	tcpDstPort  = 2
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	TCPMinSize  = 20
)

// TCP flags.
const (
	TCPFlagFin = 1 << 0
	TCPFlagSyn = 1 << 1
	TCPFlagRst = 1 << 2
	TCPFlagPsh = 1 << 3
	TCPFlagAck = 1 << 4
	TCPFlagUrg = 1 << 5
	TCPFlagEce = 1 << 6
	TCPFlagCwr = 1 << 7
)

// TCP is a TCP header view. Valid iff len >= TCPMinSize and
// TCPMinSize <= DataOffset() <= len (IsValid).
type TCP []byte

// IsValid reports whether b holds a whole TCP header including options.
func (b TCP) IsValid() bool {
	if len(b) < TCPMinSize {
		return false
	}
	off := b.DataOffset()
	return off >= TCPMinSize && off <= len(b)
}

// SrcPort returns the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }

// DstPort returns the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }

// Seq returns the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[tcpSeq:]) }

// Ack returns the acknowledgment number.
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[tcpAck:]) }

// DataOffset returns the header length in bytes.
func (b TCP) DataOffset() int { return int(b[tcpDataOff]>>4) * 4 }

// Flags returns the flag byte (FIN…CWR).
func (b TCP) Flags() uint8 { return b[tcpFlags] }

// Window returns the raw (unscaled) window.
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[tcpWindow:]) }

// Options returns the option bytes. Precondition: IsValid.
func (b TCP) Options() []byte { return b[TCPMinSize:b.DataOffset()] }

// TCP option kinds.
const (
	TCPOptEOL       = 0
	TCPOptNOP       = 1
	TCPOptMSS       = 2
	TCPOptWScale    = 3
	TCPOptSACKPerm  = 4
	TCPOptSACK      = 5
	TCPOptTimestamp = 8
)

// TCPSynOptions are the options conntrack needs from a SYN.
type TCPSynOptions struct {
	WScale   uint8 // shift count, capped at 14 (RFC 7323 §2.3)
	HasScale bool
	SACKPerm bool
}

// ParseSynOptions reads window scale and SACK-permitted from options. A
// malformed option list stops the walk; what was read so far is kept.
func ParseSynOptions(o []byte) TCPSynOptions {
	var r TCPSynOptions
	for i := 0; i < len(o); {
		switch o[i] {
		case TCPOptEOL:
			return r
		case TCPOptNOP:
			i++
			continue
		}
		if i+1 >= len(o) {
			return r
		}
		l := int(o[i+1])
		if l < 2 || i+l > len(o) {
			return r
		}
		switch o[i] {
		case TCPOptWScale:
			if l == 3 {
				r.HasScale = true
				r.WScale = min(o[i+2], 14)
			}
		case TCPOptSACKPerm:
			r.SACKPerm = l == 2
		}
		i += l
	}
	return r
}

// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |          Source Port          |       Destination Port        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |            Length             |           Checksum            |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	RFC 768
const (
	udpSrcPort = 0
	udpDstPort = 2
	udpLength  = 4
	UDPSize    = 8
)

// UDP is a UDP header view. Valid iff len >= UDPSize.
type UDP []byte

// SrcPort returns the source port.
func (b UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[udpSrcPort:]) }

// DstPort returns the destination port.
func (b UDP) DstPort() uint16 { return binary.BigEndian.Uint16(b[udpDstPort:]) }

// Length returns the length field (header plus data).
func (b UDP) Length() uint16 { return binary.BigEndian.Uint16(b[udpLength:]) }

// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |     Type      |     Code      |          Checksum             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           Identifier          |        Sequence Number        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	RFC 792 (echo); ICMPv6 (RFC 4443) has the same layout
const (
	ICMPSize = 8
)

// ICMP is an ICMPv4 or ICMPv6 header view. Valid iff len >= ICMPSize.
type ICMP []byte

// Type returns the type.
func (b ICMP) Type() uint8 { return b[0] }

// Code returns the code.
func (b ICMP) Code() uint8 { return b[1] }

// ID returns the echo identifier.
func (b ICMP) ID() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// ICMPv4 types.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DestUnreach    = 3
	ICMPv4SourceQuench   = 4
	ICMPv4Redirect       = 5
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
	ICMPv4Timestamp      = 13
	ICMPv4TimestampReply = 14
	ICMPv4InfoRequest    = 15
	ICMPv4InfoReply      = 16
	ICMPv4AddrMask       = 17
	ICMPv4AddrMaskReply  = 18
)

// ICMPv6 types.
const (
	ICMPv6DestUnreach  = 1
	ICMPv6PacketTooBig = 2
	ICMPv6TimeExceeded = 3
	ICMPv6ParamProblem = 4
	ICMPv6EchoRequest  = 128
	ICMPv6EchoReply    = 129
	ICMPv6NodeInfoQry  = 139
	ICMPv6NodeInfoResp = 140
)

// Checksum computes the Internet checksum (RFC 1071) of b folded onto
// initial (an unfolded sum in network byte order, as PseudoHeaderSum's),
// ready to store in network byte order. It sums with SumWords, whose result
// is byte-swapped: initial goes in swapped and the sum comes out swapped
// back.
func Checksum(b []byte, initial uint32) uint16 {
	acc := SumWords(b, uint64(bits.ReverseBytes16(Fold(uint64(initial)))))
	return ^bits.ReverseBytes16(Fold(acc))
}

// Fold folds a SumWords accumulator to 16 bits (not
// complemented), without a data-dependent loop: four folds bring any 64-bit
// value under 2^16.
func Fold(acc uint64) uint16 {
	acc = acc&0xffffffff + acc>>32
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	return uint16(acc)
}

// Verifies reports whether a SumWords accumulator over data that
// includes its checksum field shows the data intact: whether it folds to
// 0xffff (Fold(acc) == 0xffff), tested without folding. Folding keeps the
// value modulo 0xffff (2^16 ≡ 1) and never takes a non-zero value to zero,
// so it gives 0xffff exactly for the non-zero multiples of 0xffff; the
// compiler turns the divisibility test into a multiplication and a
// comparison, cheaper than Fold's dependent chain of additions.
func Verifies(acc uint64) bool { return acc != 0 && acc%0xffff == 0 }

// SumWords adds b to a one's-complement accumulator (64 bits, end-around
// carry), reading b in the machine's (little-endian) byte order. The
// one's-complement sum does not depend on byte order except that it comes
// out byte-swapped (RFC 1071, 2(B)): Fold(SumWords(b, 0)) is the RFC's
// network-order sum with its bytes swapped, and a verifier comparing with
// 0xffff need not swap it back. Values in network order must be swapped going in (AddWords). An
// odd last byte is the high byte of a zero-padded network-order word: the
// low byte in this order.
func SumWords(b []byte, acc uint64) uint64 {
	// 32-bit words added into 64-bit sums need no carries until 2^32
	// words (16 GB): two independent sums, no carry chain between
	// iterations. A 32-bit word's value modulo 0xffff is that of its
	// 64-bit word's half, as 2^32 ≡ 1.
	var s0, s1 uint64
	for len(b) >= 16 {
		s0 += uint64(binary.LittleEndian.Uint32(b)) + uint64(binary.LittleEndian.Uint32(b[8:]))
		s1 += uint64(binary.LittleEndian.Uint32(b[4:])) + uint64(binary.LittleEndian.Uint32(b[12:]))
		b = b[16:]
	}
	if len(b) >= 8 {
		s0 += uint64(binary.LittleEndian.Uint32(b))
		s1 += uint64(binary.LittleEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		s0 += uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s1 += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s0 += uint64(b[0])
	}
	return AddWords(acc, s0+s1)
}

// AddWords is one's-complement addition of two SumWords accumulators.
func AddWords(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	return s + c
}

// PseudoHeaderSum returns the unfolded sum of the TCP/UDP pseudo-header.
func PseudoHeaderSum(src, dst []byte, proto uint8, length int) uint32 {
	var s uint32
	for i := 0; i+1 < len(src); i += 2 {
		s += uint32(src[i])<<8 | uint32(src[i+1])
	}
	for i := 0; i+1 < len(dst); i += 2 {
		s += uint32(dst[i])<<8 | uint32(dst[i+1])
	}
	s += uint32(proto)
	s += uint32(length) & 0xffff
	s += uint32(length) >> 16
	return s
}
