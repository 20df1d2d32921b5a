package packet

import (
	"encoding/binary"

	"github.com/dpfw/dpfw/packet/header"
)

// Fragments are decoded one by one and judged as a datagram: the pipeline
// holds them until their datagram is complete (dataplane/frag.go). So a
// later fragment may start at any offset (one overlapping bytes already
// seen, RFC 1858's rewrite of the TCP flags at offset 8, drops the
// datagram there), and a first fragment may end inside its L4 header
// (FragShort: the header is read from the reassembled datagram), except
// that an IPv6 first fragment must carry the minimal upper-layer header
// RFC 8200 §4.5 requires, as the kernel's IPv6 defragmenter does.

// maxExtHeaders bounds the IPv6 extension header walk so that a hostile chain
// costs a fixed amount of work.
const maxExtHeaders = 8

// Decode parses the frame b into p. It never allocates, never panics on any
// input, and resets every field of p.
func Decode(b []byte, p *Parsed) {
	if !decodeFast(b, p) {
		decodeFull(b, p)
	}
}

// decodeFast handles the frame that makes up nearly all traffic (untagged
// Ethernet, IPv4 without options, not fragmented, a whole TCP or UDP header)
// in straight-line code, and reports false for anything else, which
// decodeFull then handles. TestDecodeFastMatchesFull checks that both give
// the same result wherever decodeFast accepts a frame.
func decodeFast(b []byte, p *Parsed) bool {
	const l3, l4 = header.EthernetSize, header.EthernetSize + header.IPv4MinSize
	if len(b) < l4+header.UDPSize {
		return false
	}
	b = b[:len(b):len(b)]
	ip := b[l3:l4:l4]
	// EtherType IPv4, version 4 + IHL 5, flags/offset: MF clear, offset 0 (DF ignored).
	if b[12] != 0x08 || b[13] != 0x00 || ip[0] != 0x45 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return false
	}
	end := l3 + int(binary.BigEndian.Uint16(ip[2:4]))
	if end > len(b) || end < l4+header.UDPSize {
		return false
	}
	proto := ip[9]
	t := b[l4:end]
	var pay int
	var flags uint8
	switch proto {
	case header.ProtoTCP:
		if len(t) < header.TCPMinSize {
			return false
		}
		off := int(t[12]>>4) * 4
		if off < header.TCPMinSize || off > len(t) {
			return false
		}
		pay, flags = l4+off, t[13]
	case header.ProtoUDP:
		if l := int(binary.BigEndian.Uint16(t[4:6])); l < header.UDPSize || l > len(t) {
			return false
		}
		pay = l4 + header.UDPSize
	default:
		return false
	}
	// Field by field: a composite literal would be built on the stack and
	// copied (with write barriers, Buf being a pointer).
	p.Buf = b
	p.Kind, p.Reason, p.Proto, p.TCPFlags, p.Frag, p.VLANs = IPv4, ReasonNone, proto, flags, 0, 0
	p.VLAN, p.EtherType = 0, header.EtherTypeIPv4
	p.L3Off, p.L4Off, p.PayOff, p.L3End = l3, l4, uint16(pay), uint16(end)
	setAddr4(&p.Src, ip[12:16])
	setAddr4(&p.Dst, ip[16:20])
	p.SrcPort = binary.BigEndian.Uint16(t[0:2])
	p.DstPort = binary.BigEndian.Uint16(t[2:4])
	p.ICMPType, p.ICMPCode = 0, 0
	p.FragID = uint32(binary.BigEndian.Uint16(ip[4:6]))
	// Adjacent fields: one 8-byte store.
	p.FragOff, p.FragData, p.FragMore, p.FragShort, p.FragRest = 0, 0, false, false, 0
	return true
}

// setAddr4 stores an IPv4 address in the first 4 bytes of a and zeroes the
// rest, with word stores: building the array in a temporary and copying it
// made the compiler reload 16 bytes over narrower stores, a store-forwarding
// stall that cost more than the rest of the fast path.
func setAddr4(a *[16]byte, v []byte) {
	binary.NativeEndian.PutUint32(a[0:4], binary.NativeEndian.Uint32(v))
	binary.NativeEndian.PutUint32(a[4:8], 0)
	binary.NativeEndian.PutUint64(a[8:16], 0)
}

// decodeFull is the general decoder: VLAN tags, IPv4 options, fragments,
// IPv6 extension headers, ICMP, and every malformation.
func decodeFull(b []byte, p *Parsed) {
	*p = Parsed{Buf: b}
	if len(b) < header.EthernetSize {
		p.Reason = ReasonTruncatedL2
		return
	}
	off := header.EthernetSize
	et := binary.BigEndian.Uint16(b[12:14])
	for et == header.EtherTypeVLAN || et == header.EtherTypeQinQ {
		if p.VLANs == 2 {
			p.Reason = ReasonTooManyTags
			return
		}
		if len(b) < off+header.VLANSize {
			p.Reason = ReasonTruncatedL2
			return
		}
		p.VLAN = binary.BigEndian.Uint16(b[off:off+2]) & 0x0fff
		et = binary.BigEndian.Uint16(b[off+2 : off+4])
		off += header.VLANSize
		p.VLANs++
	}
	p.EtherType = et
	p.L3Off = uint16(off)
	switch et {
	case header.EtherTypeIPv4:
		decode4(b, off, p)
	case header.EtherTypeIPv6:
		decode6(b, off, p)
	default:
		p.Kind = NonIP
		p.L3End = uint16(len(b))
		p.L4Off, p.PayOff = p.L3End, p.L3End
	}
}

func decode4(b []byte, off int, p *Parsed) {
	ip := header.IPv4(b[off:])
	if !ip.IsValid() {
		p.Reason = ReasonBadIPv4
		return
	}
	end := off + int(ip.TotalLen())
	l4 := off + ip.HeaderLen()
	p.L3End = uint16(end)
	p.Proto = ip.Protocol()
	setAddr4(&p.Src, ip.Src())
	setAddr4(&p.Dst, ip.Dst())
	p.FragID = uint32(ip.ID())
	fo := ip.FragOffset()
	p.FragOff = fo
	if fo > 0 || ip.More() {
		p.FragData, p.FragMore = uint16(l4), ip.More()
	}
	switch {
	case fo > 0:
		p.Frag = FragLater
		p.Kind = IPv4
		p.L4Off, p.PayOff = uint16(l4), uint16(l4)
		return
	case ip.More():
		p.Frag = FragFirst
	}
	p.Kind = IPv4
	decodeL4(b[:end], l4, p)
}

func decode6(b []byte, off int, p *Parsed) {
	ip := header.IPv6(b[off:])
	if !ip.IsValid() {
		p.Reason = ReasonBadIPv6
		return
	}
	end := off + header.IPv6Size + int(ip.PayloadLen())
	p.L3End = uint16(end)
	p.Src = [16]byte(ip.Src())
	p.Dst = [16]byte(ip.Dst())
	b = b[:end:end]
	nh := ip.NextHeader()
	l4 := off + header.IPv6Size
	for i := 0; ; i++ {
		switch nh {
		case header.ProtoHopOpts, header.ProtoRouting, header.ProtoDstOpts:
			// RFC 8200 §4.1: Hop-by-Hop appears only right after the fixed header.
			if i >= maxExtHeaders || (nh == header.ProtoHopOpts && i != 0) || len(b) < l4+8 {
				p.Reason = ReasonBadExtHeader
				return
			}
			nh = b[l4]
			l4 += (int(b[l4+1]) + 1) * 8
			if l4 > len(b) {
				p.Reason = ReasonBadExtHeader
				return
			}
			continue
		case header.ProtoAH:
			// RFC 4302: length in 4-octet units, minus 2.
			if i >= maxExtHeaders || len(b) < l4+8 {
				p.Reason = ReasonBadExtHeader
				return
			}
			nh = b[l4]
			l4 += (int(b[l4+1]) + 2) * 4
			if l4 > len(b) {
				p.Reason = ReasonBadExtHeader
				return
			}
			continue
		case header.ProtoFragment:
			if i >= maxExtHeaders || p.Frag != 0 || len(b) < l4+header.IPv6FragmentSize {
				p.Reason = ReasonBadExtHeader
				return
			}
			fh := header.IPv6Fragment(b[l4:])
			nh = fh.NextHeader()
			p.FragID = fh.ID()
			fo := fh.FragOffset()
			p.FragOff = fo
			l4 += header.IPv6FragmentSize
			if fo > 0 || fh.More() {
				p.FragData, p.FragMore = uint16(l4), fh.More()
			}
			if fo > 0 {
				p.Frag = FragLater
				p.Proto = nh
				p.Kind = IPv6
				p.L4Off, p.PayOff = uint16(l4), uint16(l4)
				return
			}
			if fh.More() {
				p.Frag = FragFirst
			}
			// An atomic fragment (offset 0, M clear; RFC 6946) is a whole
			// datagram and is decoded as one.
			continue
		}
		break
	}
	p.Proto = nh
	p.Kind = IPv6
	decodeL4(b, l4, p)
}

// decodeL4 parses the L4 header at off. Precondition: b ends at the end of the
// IP datagram and p.Kind is IPv4 or IPv6.
func decodeL4(b []byte, off int, p *Parsed) {
	p.L4Off = uint16(off)
	p.PayOff = uint16(off)
	rest := b[off:]
	switch p.Proto {
	case header.ProtoTCP:
		t := header.TCP(rest)
		if len(t) < header.TCPMinSize {
			p.truncated(len(t), header.TCPMinSize)
			return
		}
		if !t.IsValid() {
			if p.Frag == FragFirst && t.DataOffset() >= header.TCPMinSize {
				// The options go on in the next fragment.
				p.truncated(len(t), header.TCPMinSize)
				return
			}
			p.Kind, p.Reason = Malformed, ReasonBadTCPOffset
			return
		}
		p.SrcPort, p.DstPort = t.SrcPort(), t.DstPort()
		p.TCPFlags = t.Flags()
		p.PayOff = uint16(off + t.DataOffset())
	case header.ProtoUDP:
		u := header.UDP(rest)
		if len(u) < header.UDPSize {
			p.truncated(len(u), header.UDPSize)
			return
		}
		// A fragmented datagram's UDP length covers all fragments.
		if l := int(u.Length()); l < header.UDPSize || (p.Frag == 0 && l > len(u)) {
			p.Kind, p.Reason = Malformed, ReasonBadUDPLength
			return
		}
		p.SrcPort, p.DstPort = u.SrcPort(), u.DstPort()
		p.PayOff = uint16(off + header.UDPSize)
	case header.ProtoICMP, header.ProtoICMPv6:
		if (p.Proto == header.ProtoICMP) != (p.Kind == IPv4) {
			// ICMPv4 inside IPv6 or ICMPv6 inside IPv4: an unknown protocol.
			return
		}
		c := header.ICMP(rest)
		if len(c) < header.ICMPSize {
			p.truncated(len(c), header.ICMPSize)
			return
		}
		p.ICMPType, p.ICMPCode = c.Type(), c.Code()
		if isEcho(p.Proto, p.ICMPType) {
			p.SrcPort, p.DstPort = c.ID(), c.ID()
		}
		p.PayOff = uint16(off + header.ICMPSize)
	}
}

// truncated handles an L4 header cut short after have bytes. A first
// fragment's header goes on in the next fragments: it is FragShort, judged
// once its datagram is reassembled, as netfilter reassembles IPv4 before
// looking at it. IPv6 first fragments must carry min bytes of it (RFC 8200
// §4.5: nf_ct_frag6_gather discards them otherwise, see
// ipv6frag_thdr_truncated): shorter ones are tiny fragments.
func (p *Parsed) truncated(have, min int) {
	switch {
	case p.Frag != FragFirst:
		p.Kind, p.Reason = Malformed, ReasonTruncatedL4
	case p.Kind == IPv4 || have >= min:
		p.FragShort = true
	default:
		p.Kind, p.Reason = Malformed, ReasonTinyFragment
	}
}

// isEcho reports whether an ICMP type is a query whose identifier names the
// flow (echo, timestamp, information, address mask, node information).
func isEcho(proto, typ uint8) bool {
	if proto == header.ProtoICMP {
		switch typ {
		case header.ICMPv4Echo, header.ICMPv4EchoReply, header.ICMPv4Timestamp, header.ICMPv4TimestampReply,
			header.ICMPv4InfoRequest, header.ICMPv4InfoReply, header.ICMPv4AddrMask, header.ICMPv4AddrMaskReply:
			return true
		}
		return false
	}
	switch typ {
	case header.ICMPv6EchoRequest, header.ICMPv6EchoReply, header.ICMPv6NodeInfoQry, header.ICMPv6NodeInfoResp:
		return true
	}
	return false
}

// IsICMPError reports whether the ICMP/ICMPv6 type carries a quoted packet
// (destination unreachable, time exceeded, parameter problem, …).
func IsICMPError(proto, typ uint8) bool {
	if proto == header.ProtoICMP {
		switch typ {
		case header.ICMPv4DestUnreach, header.ICMPv4SourceQuench, header.ICMPv4Redirect,
			header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
			return true
		}
		return false
	}
	return typ < 128 && typ >= header.ICMPv6DestUnreach && typ <= header.ICMPv6ParamProblem
}
