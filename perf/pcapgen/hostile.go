package pcapgen

import (
	"encoding/binary"
	"net"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Labelled is a frame with what dpfw must do with it.
type Labelled struct {
	Name  string
	Frame []byte
	// Reason is the drop reason dpfw must count it under
	// (dpfw_worker_dropped_packets_total{reason}), "" if it must pass.
	Reason string
}

// TutorialFixed is the iptables states tutorial's rule set with its typos
// corrected, in the test address range, as the README shows it.
const TutorialFixed = `
-P INPUT DROP
-P OUTPUT DROP
-A INPUT -p tcp --dport 22 -s 198.18.54.2 -m state --state NEW -j ACCEPT
-A OUTPUT -p tcp --sport 22 -d 198.18.54.2 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -p tcp --sport 21 -m state --state ESTABLISHED -j ACCEPT
-A OUTPUT -p tcp --dport 21 -m state --state NEW,ESTABLISHED -j ACCEPT
-A INPUT -p tcp --sport 20 -m state --state ESTABLISHED,RELATED -j ACCEPT
-A OUTPUT -p tcp --dport 20 -m state --state ESTABLISHED -j ACCEPT
`

// HostileRules is the rule set the hostile catalogue is labelled for: a
// stateful FORWARD chain that lets port a's side start web, DNS and ping
// and refuses everything else, so INVALID packets are never accepted.
const HostileRules = `
-P FORWARD DROP
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i a -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i a -p udp --dport 53 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i a -p icmp --icmp-type echo-request -m conntrack --ctstate NEW -j ACCEPT
`

var (
	hostSrc  = net.IP{198, 18, 7, 1}
	hostDst  = net.IP{198, 19, 7, 1}
	hostSrc6 = net.ParseIP("2001:2::7:1")
	hostDst6 = net.ParseIP("2001:2::7:2")
)

func eth4() *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: ClientMAC, DstMAC: ServerMAC, EthernetType: layers.EthernetTypeIPv4}
}

func eth6() *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: ClientMAC, DstMAC: ServerMAC, EthernetType: layers.EthernetTypeIPv6}
}

func ip4(proto layers.IPProtocol, id uint16) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: proto, SrcIP: hostSrc, DstIP: hostDst}
}

// tcpSeg is a TCP segment of the catalogue to port 80 with the given flags
// (TCP4's letters), checksums right.
func tcpSeg(sport uint16, flags string, payload int) []byte {
	return TCP4(hostSrc, hostDst, sport, 80, flags, 1000, 0, payload)
}

func udp4(sport uint16, payload int) []byte {
	return Frame(eth4(), ip4(layers.IPProtocolUDP, sport), &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: 53},
		gopacket.Payload(make([]byte, payload)))
}

// edit copies f, applies fn to the copy and, if fix, recomputes checksums.
func edit(f []byte, fix bool, fn func(b []byte)) []byte {
	b := append([]byte(nil), f...)
	fn(b)
	if fix {
		FixChecksums(b)
	}
	return b
}

// withID sets an IPv4 frame's identification (so that fragments of
// different datagrams never share one).
func withID(f []byte, id uint16) []byte {
	return edit(f, true, func(b []byte) { binary.BigEndian.PutUint16(b[18:], id) })
}

// frag4 is fragment [off, off+n) of the IP payload of an IPv4 frame (no
// options), with MF as more and the header checksum right.
func frag4(f []byte, off, n int, more bool) []byte {
	b := append(append([]byte(nil), f[:34]...), f[34+off:34+off+n]...)
	binary.BigEndian.PutUint16(b[16:], uint16(20+n))
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[20:], fo)
	FixChecksums(b)
	return b
}

// Hostile returns a capture of malformed, evasive and invalid frames, each
// labelled with the drop reason dpfw must count, interleaved with traffic
// that HostileRules allows (labelled ""). Every address is in the test range.
func Hostile() []Labelled {
	syn := tcpSeg(40001, "S", 0)
	dns := udp4(40002, 32)
	ping := Frame(eth4(), ip4(layers.IPProtocolICMPv4, 9), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 77, Seq: 1},
		gopacket.Payload([]byte("ping")))
	v6udp := Frame(eth6(), &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: hostSrc6, DstIP: hostDst6},
		&layers.UDP{SrcPort: 40004, DstPort: 53}, gopacket.Payload(make([]byte, 24)))
	// An ICMP port-unreachable quoting a UDP flow dpfw never saw.
	quoted := udp4(41000, 8)[14:]
	icmpErr := Frame(eth4(), ip4(layers.IPProtocolICMPv4, 10), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)},
		gopacket.Payload(quoted[:28]))
	// Nine Destination Options headers: a chain longer than dpfw walks.
	chain := []byte{}
	for i := 0; i < 9; i++ {
		chain = append(chain, 60, 0, 1, 4, 0, 0, 0, 0)
	}
	chain[len(chain)-8] = 17
	v6chain := Frame(eth6(), &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Destination, SrcIP: hostSrc6, DstIP: hostDst6},
		gopacket.Payload(append(chain, make([]byte, 8)...)))

	out := []Labelled{
		{"allowed: TCP SYN to port 80", syn, ""},
		{"IHL below 5", edit(syn, false, func(b []byte) { b[14] = 0x44 }), "bad_ipv4_header"},
		{"total length past the frame", edit(syn, false, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 400) }), "bad_ipv4_header"},
		{"total length below the header", edit(syn, false, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) }), "bad_ipv4_header"},
		{"IP version 5 in an IPv4 frame", edit(syn, false, func(b []byte) { b[14] = 0x55 }), "bad_ipv4_header"},
		{"IPv4 option with length 0", Frame(eth4(), &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: hostSrc, DstIP: hostDst,
			Options: []layers.IPv4Option{{OptionType: 7, OptionLength: 4, OptionData: []byte{4, 0}}}},
			&layers.TCP{SrcPort: 40010, DstPort: 80, SYN: true}), ""}, // fixed below
		{"allowed: DNS query", dns, ""},
		{"TCP header cut short", edit(syn[:14+20+12], true, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 32) }), "truncated_l4"},
		{"TCP data offset 4", edit(syn, true, func(b []byte) { b[14+20+12] = 4 << 4 }), "bad_tcp_offset"},
		{"TCP data offset past the end", edit(syn, true, func(b []byte) { b[14+20+12] = 15 << 4 }), "bad_tcp_offset"},
		{"UDP length 7", edit(dns, true, func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 7) }), "bad_udp_length"},
		{"UDP length past the datagram", edit(dns, true, func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 200) }), "bad_udp_length"},
		{"fragments", nil, ""}, // replaced by fragmentCases below
		{"IPv6 payload length past the frame", edit(v6udp, false, func(b []byte) { binary.BigEndian.PutUint16(b[18:], 500) }), "bad_ipv6_header"},
		{"IPv6 extension header running past the frame", edit(v6udp, false, func(b []byte) {
			b[20] = 0 // next header: Hop-by-Hop
			b[54], b[55] = 17, 200
		}), "bad_ipv6_ext_header"},
		{"IPv6 chain of nine extension headers", v6chain, "bad_ipv6_ext_header"},
		{"allowed: IPv6 DNS query", v6udp, ""},
		{"wrong TCP checksum", edit(syn, false, func(b []byte) { b[14+20+16] ^= 0x40 }), "bad_checksum"},
		{"wrong IPv4 header checksum", edit(dns, false, func(b []byte) { b[14+10] ^= 0x01 }), "bad_checksum"},
		{"wrong UDP checksum", edit(dns, false, func(b []byte) { b[len(b)-1] ^= 0xff }), "bad_checksum"},
		{"wrong ICMP checksum", edit(ping, false, func(b []byte) { b[14+20+2] ^= 0x10 }), "bad_checksum"},
		{"wrong UDP/IPv6 checksum", edit(v6udp, false, func(b []byte) { b[len(b)-1] ^= 0x01 }), "bad_checksum"},
		{"allowed: ping", ping, ""},
		{"SYN+FIN", tcpSeg(40007, "SF", 0), "ct_invalid"},
		{"no flags (NULL scan)", tcpSeg(40008, "", 0), "ct_invalid"},
		{"FIN+PSH+URG (Xmas scan)", tcpSeg(40009, "FPU", 0), "ct_invalid"},
		{"SYN+RST", tcpSeg(40011, "SR", 0), "ct_invalid"},
		{"ICMP error quoting an unknown flow", icmpErr, "ct_invalid"},
		{"three VLAN tags", append(append(append([]byte(nil), syn[:12]...), 0x81, 0, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3), syn[12:]...), "too_many_vlan_tags"},
		{"runt Ethernet frame", syn[:10], "truncated_l2"},
		{"allowed: a second TCP SYN", tcpSeg(40012, "S", 0), ""},
	}
	// gopacket fixes up option lengths: write the zero length by hand.
	for i := 0; i < len(out); i++ {
		if out[i].Name == "fragments" {
			out = append(out[:i], append(fragmentCases(), out[i+1:]...)...)
		}
		if out[i].Name == "IPv4 option with length 0" {
			b := out[i].Frame
			b[14+21] = 0
			FixChecksums(b)
			out[i].Reason = "bad_ipv4_header"
		}
	}
	return out
}

// fragmentCases are the catalogue's fragments: datagrams the pipeline holds
// until complete and judges reassembled, and the layouts it drops.
func fragmentCases() []Labelled {
	big := udp4(40003, 400)
	tinySYN := withID(tcpSeg(40013, "S", 0), 7)
	rewritten := withID(tcpSeg(40005, "S", 40), 5)
	// IPv6 with a fragment header: a first fragment carrying only 8 bytes
	// of a TCP header (RFC 7112: the whole header chain must be in it).
	v6frag := Frame(eth6(), &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: hostSrc6, DstIP: hostDst6},
		gopacket.Payload(append([]byte{6, 0, 0, 1, 0, 0, 0, 42}, make([]byte, 8)...)))
	return []Labelled{
		{"allowed: first fragment", frag4(big, 0, 208, true), ""},
		{"allowed: its second fragment", frag4(big, 208, 160, true), ""},
		{"allowed: its last fragment", frag4(big, 368, 40, false), ""},
		{"allowed: a SYN's first 8 bytes (a tiny first fragment, legal in IPv4)", frag4(tinySYN, 0, 8, true), ""},
		{"allowed: the rest of its header (judged reassembled)", frag4(tinySYN, 8, 12, false), ""},
		{"first fragment of a SYN, held", frag4(rewritten, 0, 24, true), "fragment_overlap"},
		{"a fragment rewriting its TCP flags (offset 8): drops the datagram", frag4(rewritten, 8, 32, false), "fragment_overlap"},
		{"its last fragment again, after the datagram completed", frag4(big, 368, 40, false), "fragment"},
		{"IPv6 tiny first fragment", v6frag, "tiny_fragment"},
	}
}

// Flood addresses: the flood comes from 198.18.0.0/16 and 198.19.0.0/17
// (clients) to 198.19.255.254; the established flow runs between
// 198.19.200.1 and 198.19.200.2, outside both.
var (
	floodDst  = net.IP{198, 19, 255, 254}
	estClient = net.IP{198, 19, 200, 1}
	estServer = net.IP{198, 19, 200, 2}
)

// FloodRules labels the flood capture: the established flow's packets are
// counted by the rules commented "est" (accepted as ESTABLISHED) and
// "est-lost" (anything else of that flow: must stay 0); the flood's SYNs
// are accepted as NEW, filling the table.
const FloodRules = `
-P FORWARD DROP
-A FORWARD -s 198.19.200.0/24 -d 198.19.200.0/24 -p tcp -m conntrack --ctstate ESTABLISHED -m comment --comment est -j ACCEPT
-A FORWARD -s 198.19.200.1 -d 198.19.200.2 -p tcp --syn -m conntrack --ctstate NEW -m comment --comment est-open -j ACCEPT
-A FORWARD -s 198.19.200.0/24 -d 198.19.200.0/24 -m comment --comment est-lost -j DROP
-A FORWARD -p tcp --syn -m conntrack --ctstate NEW -m comment --comment flood -j ACCEPT
`

// FloodSource is the i-th flood source: 2^17 - 2^15 addresses of the test
// range (198.18.0.0/16 and 198.19.0.0/17) times 16 source ports, so up to
// 1,572,864 distinct (address, port) pairs; i wraps around beyond that.
func FloodSource(i int) (net.IP, uint16) {
	const addrs = 65536 + 32768
	a := i % addrs
	ip := net.IP{198, 18, byte(a >> 8), byte(a)}
	if a >= 65536 {
		ip = net.IP{198, 19, byte((a - 65536) >> 8), byte(a)}
	}
	return ip, uint16(1024 + (i/addrs)%16)
}

// SYNFlood returns a capture of an established TCP connection (handshake
// first) whose data and ACKs continue interleaved with n SYNs from
// distinct sources: one established-flow packet after every `every` SYNs.
// Its second return is how many frames belong to the established flow.
// Replayed forever (infinite_rx), the flow's frames repeat as
// retransmissions, which stay in window.
func SYNFlood(n, every int) ([][]byte, int) {
	cs, ss := uint32(1000), uint32(9000)
	out := [][]byte{
		TCP4(estClient, estServer, 5555, 80, "S", cs, 0, 0),
		TCP4(estServer, estClient, 80, 5555, "SA", ss, cs+1, 0),
		TCP4(estClient, estServer, 5555, 80, "A", cs+1, ss+1, 0),
	}
	est := 3
	// Client data in 64-byte segments, each answered by an ACK; at most
	// 16 KB in all so every replay stays inside the window.
	sent := uint32(0)
	for i := 0; i < n; i++ {
		src, sport := FloodSource(i)
		out = append(out, TCP4(src, floodDst, sport, 80, "S", uint32(i)*7919, 0, 0))
		if every > 0 && i%every == every-1 {
			if est%2 == 1 && sent < 16384 {
				out = append(out, TCP4(estClient, estServer, 5555, 80, "A", cs+1+sent, ss+1, 64))
				sent += 64
			} else {
				out = append(out, TCP4(estServer, estClient, 80, 5555, "A", ss+1, cs+1+sent, 0))
			}
			est++
		}
	}
	return out, est
}
