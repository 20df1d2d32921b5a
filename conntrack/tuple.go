package conntrack

import (
	"net/netip"
	"strconv"

	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Tuple identifies one direction of a connection. It is a flat, pointer-free,
// fixed-size value (40 bytes, checked in tuple_test.go) so that it hashes as
// bytes and copies cheaply. IPv4 addresses occupy the first 4 bytes of Src
// and Dst; the rest is zero. For ICMP and ICMPv6, SrcPort holds the
// identifier and DstPort the type (encoded, see icmpEnc) and code, as
// netfilter's ICMP tuples do: an echo request and its reply are the two
// directions of one connection (Reverse maps the type to its reply's),
// while an echo request in the other direction is a connection of its
// own. For protocols without ports both are zero.
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
	sp, dp := t.DstPort, t.SrcPort
	if isICMP(t.Proto) {
		sp, dp = t.SrcPort, t.DstPort^icmpReplyBit
	}
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: sp, DstPort: dp, Proto: t.Proto, Family: t.Family, Zone: t.Zone}
}

func isICMP(proto uint8) bool { return proto == header.ProtoICMP || proto == header.ProtoICMPv6 }

// An ICMP tuple's DstPort holds the type, encoded, and the code:
// icmpEnc[type]<<8 | code. The encoding gives each query (echo and the
// others) an even number and its reply the odd number after it (netfilter's
// invmap), so that reversing a tuple is one XOR (icmpReplyBit) and the
// table's direction check stays inlinable. Other types get the numbers
// left; they never start a connection.
const icmpReplyBit = 1 << 8

var icmpEnc, icmpDec = func() (enc, dec [2][256]uint8) {
	pairs := [2][][2]uint8{
		{{header.ICMPv4Echo, header.ICMPv4EchoReply}, {header.ICMPv4Timestamp, header.ICMPv4Timestamp + 1},
			{header.ICMPv4InfoRequest, header.ICMPv4InfoRequest + 1}, {header.ICMPv4AddrMask, header.ICMPv4AddrMask + 1}},
		{{header.ICMPv6EchoRequest, header.ICMPv6EchoRequest + 1}, {header.ICMPv6NodeInfoQry, header.ICMPv6NodeInfoQry + 1}},
	}
	for v := range 2 {
		var used [256]bool
		next := 0
		for _, p := range pairs[v] {
			enc[v][p[0]], enc[v][p[1]] = uint8(next), uint8(next+1)
			used[p[0]], used[p[1]] = true, true
			next += 2
		}
		for t := range 256 {
			if !used[t] {
				enc[v][t] = uint8(next)
				next++
			}
		}
		for t := range 256 {
			dec[v][enc[v][t]] = uint8(t)
		}
	}
	return enc, dec
}()

// icmpTypeCode is an ICMP tuple's DstPort for type and code.
func icmpTypeCode(proto, typ, code uint8) uint16 {
	return uint16(icmpEnc[icmpV6(proto)][typ])<<8 | uint16(code)
}

func icmpV6(proto uint8) int {
	if proto == header.ProtoICMPv6 {
		return 1
	}
	return 0
}

// ICMP returns an ICMP tuple's message type and code.
func (t *Tuple) ICMP() (typ, code uint8) {
	return icmpDec[icmpV6(t.Proto)][t.DstPort>>8], uint8(t.DstPort)
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
		typ, code := t.ICMP()
		b = append(b, " type="...)
		b = strconv.AppendUint(b, uint64(typ), 10)
		b = append(b, " code="...)
		b = strconv.AppendUint(b, uint64(code), 10)
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
		t.SrcPort, t.DstPort = ports(p)
	}
	return t
}

// ports are a packet's tuple ports: TCP, UDP and SCTP ports, or for ICMP
// the identifier and type<<8|code. Precondition: hasPorts(p.Proto).
func ports(p *packet.Parsed) (uint16, uint16) {
	if isICMP(p.Proto) {
		return p.SrcPort, icmpTypeCode(p.Proto, p.ICMPType, p.ICMPCode)
	}
	return p.SrcPort, p.DstPort
}

// hasPorts reports whether tuples of proto carry ports (or an ICMP id).
func hasPorts(proto uint8) bool {
	switch proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP, header.ProtoICMP, header.ProtoICMPv6:
		return true
	}
	return false
}

// MakeTuple builds the tuple of one direction from its addresses (one
// family; IPv4-mapped IPv6 addresses are IPv4), protocol and ports. For
// ICMP and ICMPv6, sport is the identifier and dport the type<<8|code;
// protocols without ports ignore them. It reports false for addresses
// that are invalid or of two families.
func MakeTuple(src, dst netip.Addr, proto uint8, sport, dport uint16, zone uint16) (Tuple, bool) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return Tuple{}, false
	}
	t := Tuple{Proto: proto, Zone: zone, Family: 6}
	if src.Is4() {
		t.Family = 4
		s, d := src.As4(), dst.As4()
		copy(t.Src[:], s[:])
		copy(t.Dst[:], d[:])
	} else {
		t.Src, t.Dst = src.As16(), dst.As16()
	}
	if !hasPorts(proto) {
		return t, true
	}
	t.SrcPort, t.DstPort = sport, dport
	if isICMP(proto) {
		t.DstPort = icmpTypeCode(proto, uint8(dport>>8), uint8(dport))
	}
	return t, true
}
