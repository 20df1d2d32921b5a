package conntrack

import (
	"net/netip"
	"strconv"

	"github.com/dpfw/dpfw/dataplane/header"
	"github.com/dpfw/dpfw/dataplane/packet"
)

// Tuple identifies one direction of a connection. It is a flat, pointer-free,
// fixed-size value (40 bytes, checked in tuple_test.go) so that it hashes as
// bytes and copies cheaply. IPv4 addresses occupy the first 4 bytes of Src
// and Dst; the rest is zero. For ICMP queries both ports hold the identifier
// and Type holds the request type of the original direction; for protocols
// without ports both are zero.
type Tuple struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	// Family is 4 or 6.
	Family uint8
	// Zone separates identical tuples seen on different links.
	Zone uint16
}

// Reverse returns the tuple of the other direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto, Family: t.Family, Zone: t.Zone}
}

// SrcAddr returns the source address.
func (t *Tuple) SrcAddr() netip.Addr { return addr(t.Family, &t.Src) }

// DstAddr returns the destination address.
func (t *Tuple) DstAddr() netip.Addr { return addr(t.Family, &t.Dst) }

func addr(family uint8, a *[16]byte) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(*a)
}

// String formats the tuple like conntrack -L ("src=… dst=… sport=… dport=…").
// It allocates: never call it on the packet path.
func (t Tuple) String() string { return string(t.AppendText(nil)) }

// AppendText appends the tuple as conntrack -L prints it
// (src=… dst=… sport=… dport=…, or id=… for ICMP).
func (t Tuple) AppendText(b []byte) []byte {
	b = append(b, "src="...)
	b = t.SrcAddr().AppendTo(b)
	b = append(b, " dst="...)
	b = t.DstAddr().AppendTo(b)
	switch t.Proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP:
		b = append(b, " sport="...)
		b = strconv.AppendUint(b, uint64(t.SrcPort), 10)
		b = append(b, " dport="...)
		b = strconv.AppendUint(b, uint64(t.DstPort), 10)
	case header.ProtoICMP, header.ProtoICMPv6:
		b = append(b, " id="...)
		b = strconv.AppendUint(b, uint64(t.SrcPort), 10)
	}
	return b
}

// TupleOf returns the tuple of a decoded IP packet in zone.
// Precondition: p.IsIP().
func TupleOf(p *packet.Parsed, zone uint16) Tuple {
	t := Tuple{Src: p.Src, Dst: p.Dst, Proto: p.Proto, Zone: zone, Family: 4}
	if p.Kind == packet.IPv6 {
		t.Family = 6
	}
	if hasPorts(p.Proto) {
		// TCP, UDP and SCTP ports; for ICMP queries (echo and the others)
		// the identifier, which names the flow in both directions
		// (SrcPort == DstPort == id).
		t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	}
	return t
}

// hasPorts reports whether tuples of proto carry ports (or an ICMP id).
func hasPorts(proto uint8) bool {
	switch proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP, header.ProtoICMP, header.ProtoICMPv6:
		return true
	}
	return false
}
