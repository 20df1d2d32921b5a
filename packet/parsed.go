package packet

import "fmt"

// Kind says what a frame is, as far as the firewall is concerned.
type Kind uint8

// Kinds of frame.
const (
	// Malformed frames failed validation; Reason says why. They are dropped.
	Malformed Kind = iota
	// NonIP frames (ARP, LLDP, …) are neither IPv4 nor IPv6.
	NonIP
	// IPv4 frames.
	IPv4
	// IPv6 frames.
	IPv6
)

var kindNames = [...]string{"malformed", "non-ip", "ipv4", "ipv6"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Reason is why a frame is Malformed.
type Reason uint8

// Reasons a frame is Malformed. Each has its own drop counter.
const (
	ReasonNone         Reason = iota
	ReasonTruncatedL2         // shorter than its Ethernet/VLAN headers
	ReasonBadIPv4             // bad version, IHL, total length or options
	ReasonBadIPv6             // bad version or payload length
	ReasonBadExtHeader        // IPv6 extension header chain too long, truncated, or misplaced
	ReasonTruncatedL4         // TCP/UDP/ICMP header does not fit
	ReasonBadTCPOffset        // TCP data offset below 5 or past the end
	ReasonBadUDPLength        // UDP length field below 8 or past the end
	ReasonTinyFragment        // first fragment without a whole L4 header, or a later one overlapping it (RFC 1858)
	ReasonTooManyTags         // more than two VLAN tags
	ReasonOversize            // larger than one mbuf (chained mbufs: mempool.data_room too small for the port's MTU)
	NumReasons                // number of reasons; not a reason
)

var reasonNames = [...]string{
	"none", "truncated_l2", "bad_ipv4_header", "bad_ipv6_header", "bad_ipv6_ext_header",
	"truncated_l4", "bad_tcp_offset", "bad_udp_length", "tiny_fragment", "too_many_vlan_tags",
	"oversize",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Fragment flags.
const (
	FragFirst = 1 << iota // offset 0, more fragments follow
	FragLater             // offset > 0: no L4 header in this fragment
)

// Parsed is one decoded frame. It is flat and fixed-size so a worker keeps a
// preallocated array of them, one per burst slot. Addresses are stored in
// 16-byte arrays; IPv4 addresses occupy the first 4 bytes, the rest is zero.
//
// Fields past Kind are meaningful only for the kinds that say so.
type Parsed struct {
	// Buf is the whole frame.
	Buf []byte

	Kind   Kind
	Reason Reason // Malformed only

	// Proto is the L4 protocol number (IP kinds). For IPv6 it is the protocol
	// after the extension headers.
	Proto uint8
	// TCPFlags holds the TCP flag byte (TCP only).
	TCPFlags uint8
	// Frag is 0, FragFirst or FragLater.
	Frag uint8
	// VLANs is the number of VLAN tags (0–2); VLAN is the innermost VID.
	VLANs uint8
	VLAN  uint16

	EtherType uint16
	// L3Off, L4Off and PayOff are offsets into Buf of the IP header, the L4
	// header and the L4 payload. L4Off == PayOff when there is no L4 header
	// (later fragments, unknown protocols).
	L3Off, L4Off, PayOff uint16
	// L3End is where the IP datagram ends (the frame may carry padding).
	L3End uint16

	Src, Dst [16]byte
	// SrcPort, DstPort are TCP/UDP ports. For ICMP echo both hold the id;
	// for other ICMP types both are 0.
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode for ICMP and ICMPv6.
	ICMPType, ICMPCode uint8
	// FragID is the IPv4 identification or IPv6 fragment id.
	FragID uint32
	// FragOff is the fragment offset in bytes.
	FragOff uint16
	// FragData is the offset in Buf where a fragment's data starts (after
	// the IPv4 header, or after the IPv6 fragment header); FragMore is its
	// MF flag (fragments only).
	FragData uint16
	FragMore bool
	// FragShort marks a first fragment that ends inside its L4 header
	// (a "tiny fragment", legal in IPv4): its ports, flags and ICMP type
	// are known only from the reassembled datagram, and it is judged by
	// that (dataplane/frag.go).
	FragShort bool
	// FragRest is 0 but in the decode a reassembled datagram is judged
	// by: its first fragment's, with FragRest the bytes of payload its
	// later fragments carry. L3Len and the TCP tracker count them.
	FragRest uint16
}

// IsIP reports whether the frame is IPv4 or IPv6.
func (p *Parsed) IsIP() bool { return p.Kind == IPv4 || p.Kind == IPv6 }

// L4 returns the L4 header and payload up to the end of the IP datagram.
func (p *Parsed) L4() []byte { return p.Buf[p.L4Off:p.L3End] }

// Payload returns the L4 payload up to the end of the IP datagram.
func (p *Parsed) Payload() []byte { return p.Buf[p.PayOff:p.L3End] }

// L3Len returns the IP datagram's length (header plus payload; for a
// datagram judged by its first fragment, with FragRest).
func (p *Parsed) L3Len() int { return int(p.L3End) - int(p.L3Off) + int(p.FragRest) }

// String formats the frame for logs and tests. It allocates: never call it on
// the packet path.
func (p *Parsed) String() string {
	switch p.Kind {
	case Malformed:
		return "malformed(" + p.Reason.String() + ")"
	case NonIP:
		return fmt.Sprintf("non-ip ethertype=%#04x", p.EtherType)
	}
	n := 4
	if p.Kind == IPv6 {
		n = 16
	}
	return fmt.Sprintf("%s proto=%d %x:%d > %x:%d flags=%#x frag=%d", p.Kind, p.Proto,
		p.Src[:n], p.SrcPort, p.Dst[:n], p.DstPort, p.TCPFlags, p.Frag)
}
