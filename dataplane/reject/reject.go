// Package reject builds the answers of iptables' REJECT target: a TCP RST,
// or an ICMP / ICMPv6 destination-unreachable quoting the rejected packet.
// It works on byte slices and never allocates; the worker writes the answer
// into the rejected packet's own buffer and sends it back out of the port
// the packet came in on.
package reject

import (
	"encoding/binary"

	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Kind is a --reject-with type.
type Kind uint8

// Kinds.
const (
	PortUnreachable Kind = iota // icmp-port-unreachable / icmp6-port-unreachable (iptables' default)
	TCPReset                    // tcp-reset
	NetUnreachable
	HostUnreachable
	ProtoUnreachable
	NetProhibited
	HostProhibited
	AdminProhibited // icmp-admin-prohibited / icmp6-adm-prohibited
	NoRoute         // icmp6-no-route
	AddrUnreachable // icmp6-addr-unreachable
)

// Parse maps a --reject-with name to a Kind ("" means the default).
func Parse(s string) Kind {
	switch s {
	case "tcp-reset":
		return TCPReset
	case "icmp-net-unreachable":
		return NetUnreachable
	case "icmp-host-unreachable":
		return HostUnreachable
	case "icmp-proto-unreachable":
		return ProtoUnreachable
	case "icmp-net-prohibited":
		return NetProhibited
	case "icmp-host-prohibited":
		return HostProhibited
	case "icmp-admin-prohibited", "icmp6-adm-prohibited":
		return AdminProhibited
	case "icmp6-no-route":
		return NoRoute
	case "icmp6-addr-unreachable":
		return AddrUnreachable
	}
	return PortUnreachable
}

// icmpv4 type 3 codes and ICMPv6 type 1 codes per kind.
func codes(k Kind) (v4, v6 uint8) {
	switch k {
	case NetUnreachable:
		return 0, 0
	case HostUnreachable:
		return 1, 3
	case ProtoUnreachable:
		return 2, 4
	case NetProhibited:
		return 9, 1
	case HostProhibited:
		return 10, 1
	case AdminProhibited:
		return 13, 1
	case NoRoute:
		return 0, 0
	case AddrUnreachable:
		return 1, 3
	}
	return 3, 4 // port unreachable
}

// Answerable reports whether p may be answered at all. RFC 1122 §3.2.2 and
// Linux's REJECT: never answer an ICMP error, a RST, a later fragment, or a
// packet to or from a broadcast or multicast address.
func Answerable(p *packet.Parsed) bool {
	if !p.IsIP() || p.Frag == packet.FragLater || p.FragShort {
		return false
	}
	if (p.Proto == header.ProtoICMP || p.Proto == header.ProtoICMPv6) && packet.IsICMPError(p.Proto, p.ICMPType) {
		return false
	}
	if p.Proto == header.ProtoTCP && p.TCPFlags&header.TCPFlagRst != 0 {
		return false
	}
	if p.Buf[0]&1 != 0 { // Ethernet group address
		return false
	}
	if p.Kind == packet.IPv4 {
		if p.Dst[0] >= 224 || p.Src[0] >= 224 || (p.Dst[0] == 255 && p.Dst[3] == 255) {
			return false
		}
	} else if p.Dst[0] == 0xff || p.Src[0] == 0xff {
		return false
	}
	return true
}

// maxQuote bounds how much of the rejected packet an ICMP error quotes:
// RFC 1812 (576-byte datagrams) for IPv4, the minimum MTU (1280) for IPv6.
const (
	maxICMPv4 = 576
	maxICMPv6 = 1280
)

// Build writes into dst the frame that answers p (frame is p's buffer) with
// kind k and returns its length, or 0 if p must not or cannot be answered
// (dst too small, a TCP reset asked for a non-TCP packet falls back to port
// unreachable as iptables refuses that combination at load time).
// Precondition: Answerable(p).
func Build(dst []byte, p *packet.Parsed, k Kind) int {
	frame := p.Buf
	l3 := int(p.L3Off)
	if len(dst) < l3+header.IPv6Size+header.ICMPSize {
		return 0
	}
	// Ethernet (and VLAN tags): copied, MACs swapped.
	copy(dst[:l3], frame[:l3])
	copy(dst[0:6], frame[6:12])
	copy(dst[6:12], frame[0:6])
	if k == TCPReset && p.Proto == header.ProtoTCP {
		return l3 + buildRST(dst[l3:], p)
	}
	if p.Kind == packet.IPv4 {
		return l3 + buildICMPv4(dst[l3:], p, k)
	}
	return l3 + buildICMPv6(dst[l3:], p, k)
}

func putIPv4(b []byte, p *packet.Parsed, proto uint8, total int) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint32(b[4:], 0) // id 0, no flags
	b[8], b[9] = 64, proto
	binary.BigEndian.PutUint16(b[10:], 0)
	copy(b[12:16], p.Dst[:4])
	copy(b[16:20], p.Src[:4])
	binary.BigEndian.PutUint16(b[10:], header.Checksum(b[:20], 0))
}

func putIPv6(b []byte, p *packet.Parsed, proto uint8, payload int) {
	binary.BigEndian.PutUint32(b[0:], 6<<28)
	binary.BigEndian.PutUint16(b[4:], uint16(payload))
	b[6], b[7] = proto, 64
	copy(b[8:24], p.Dst[:])
	copy(b[24:40], p.Src[:])
}

// buildRST answers a TCP segment with a RST as Linux's nf_reject does: if the
// segment carries an ACK, RST with seq = its ack; otherwise RST|ACK acking
// everything it occupied.
func buildRST(b []byte, p *packet.Parsed) int {
	in := p.Buf[p.L4Off:p.L3End]
	v6 := p.Kind == packet.IPv6
	hl := header.IPv4MinSize
	if v6 {
		hl = header.IPv6Size
	}
	if len(b) < hl+header.TCPMinSize {
		return 0
	}
	t := b[hl : hl+header.TCPMinSize]
	binary.BigEndian.PutUint16(t[0:], p.DstPort)
	binary.BigEndian.PutUint16(t[2:], p.SrcPort)
	flags := p.TCPFlags
	if flags&header.TCPFlagAck != 0 {
		copy(t[4:8], in[8:12]) // seq = their ack
		binary.BigEndian.PutUint32(t[8:], 0)
		t[13] = header.TCPFlagRst
	} else {
		seq := binary.BigEndian.Uint32(in[4:8])
		n := uint32(int(p.L3End) - int(p.PayOff))
		if flags&header.TCPFlagSyn != 0 {
			n++
		}
		if flags&header.TCPFlagFin != 0 {
			n++
		}
		binary.BigEndian.PutUint32(t[4:], 0)
		binary.BigEndian.PutUint32(t[8:], seq+n)
		t[13] = header.TCPFlagRst | header.TCPFlagAck
	}
	t[12] = 5 << 4
	binary.BigEndian.PutUint16(t[14:], 0) // window
	binary.BigEndian.PutUint16(t[16:], 0) // checksum
	binary.BigEndian.PutUint16(t[18:], 0)
	var sum uint32
	if v6 {
		putIPv6(b, p, header.ProtoTCP, header.TCPMinSize)
		sum = header.PseudoHeaderSum(b[8:24], b[24:40], header.ProtoTCP, header.TCPMinSize)
	} else {
		putIPv4(b, p, header.ProtoTCP, hl+header.TCPMinSize)
		sum = header.PseudoHeaderSum(b[12:16], b[16:20], header.ProtoTCP, header.TCPMinSize)
	}
	binary.BigEndian.PutUint16(t[16:], header.Checksum(t, sum))
	return hl + header.TCPMinSize
}

func buildICMPv4(b []byte, p *packet.Parsed, k Kind) int {
	code, _ := codes(k)
	quote := p.Buf[p.L3Off:p.L3End]
	n := min(len(quote), maxICMPv4-header.IPv4MinSize-header.ICMPSize, len(b)-header.IPv4MinSize-header.ICMPSize)
	if n < header.IPv4MinSize+8 && n < len(quote) {
		return 0
	}
	ic := b[header.IPv4MinSize : header.IPv4MinSize+header.ICMPSize+n]
	// The quote may overlap nothing: dst is a separate buffer.
	copy(ic[header.ICMPSize:], quote[:n])
	ic[0], ic[1] = header.ICMPv4DestUnreach, code
	binary.BigEndian.PutUint16(ic[2:], 0)
	binary.BigEndian.PutUint32(ic[4:], 0)
	binary.BigEndian.PutUint16(ic[2:], header.Checksum(ic, 0))
	putIPv4(b, p, header.ProtoICMP, header.IPv4MinSize+len(ic))
	return header.IPv4MinSize + len(ic)
}

func buildICMPv6(b []byte, p *packet.Parsed, k Kind) int {
	_, code := codes(k)
	quote := p.Buf[p.L3Off:p.L3End]
	n := min(len(quote), maxICMPv6-header.IPv6Size-header.ICMPSize, len(b)-header.IPv6Size-header.ICMPSize)
	ic := b[header.IPv6Size : header.IPv6Size+header.ICMPSize+n]
	copy(ic[header.ICMPSize:], quote[:n])
	ic[0], ic[1] = header.ICMPv6DestUnreach, code
	binary.BigEndian.PutUint16(ic[2:], 0)
	binary.BigEndian.PutUint32(ic[4:], 0)
	putIPv6(b, p, header.ProtoICMPv6, len(ic))
	sum := header.PseudoHeaderSum(b[8:24], b[24:40], header.ProtoICMPv6, len(ic))
	binary.BigEndian.PutUint16(ic[2:], header.Checksum(ic, sum))
	return header.IPv6Size + len(ic)
}
