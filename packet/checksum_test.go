package packet_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// checksummedFrames are frames with correct checksums, built by gopacket.
func checksummedFrames() map[string][]byte {
	return checksummedFramesWith(gopacket.Payload("an odd-length payload"))
}

// checksummedFramesWith builds them with payload pay.
func checksummedFramesWith(pay gopacket.Payload) map[string][]byte {
	e4 := &layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: layers.EthernetTypeIPv4}
	e6 := &layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: layers.EthernetTypeIPv6}
	ip4 := func(p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: p, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 19, 0, 1},
			Options: nil}
	}
	ip6 := func(p layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	}
	return map[string][]byte{
		"tcp4":  pcapgen.Frame(e4, ip4(layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 22, Seq: 7, SYN: true, Window: 1000}, pay),
		"udp4":  pcapgen.Frame(e4, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 5353, DstPort: 53}, pay),
		"icmp4": pcapgen.Frame(e4, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 9, Seq: 1}, pay),
		"tcp6":  pcapgen.Frame(e6, ip6(layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 22, Seq: 7, SYN: true, Window: 1000}, pay),
		"udp6":  pcapgen.Frame(e6, ip6(layers.IPProtocolUDP), &layers.UDP{SrcPort: 5353, DstPort: 53}, pay),
		"icmp6": pcapgen.Frame(e6, ip6(layers.IPProtocolICMPv6), &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, &layers.ICMPv6Echo{Identifier: 9, SeqNumber: 1}, pay),
	}
}

// Correct checksums pass; any single-bit error in a covered byte (the IPv4
// header, the L4 header and payload) is caught.
func TestChecksumOK(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 3, 5, 7, 8, 21, 64, 333, 1400} {
		pay := make(gopacket.Payload, n)
		for i := range pay {
			pay[i] = byte(r.Uint32())
		}
		if n == 64 {
			for i := range pay {
				pay[i] = 0xff // carries at every word
			}
		}
		for name, frame := range checksummedFramesWith(pay) {
			checkFrame(t, fmt.Sprintf("%s, %d-byte payload", name, n), frame)
		}
	}
}

func checkFrame(t *testing.T, name string, frame []byte) {
	{
		var p packet.Parsed
		packet.Decode(frame, &p)
		if !p.IsIP() {
			t.Fatalf("%s: %v", name, &p)
		}
		if !packet.ChecksumOK(&p, 0, true) {
			t.Errorf("%s: a correct frame fails", name)
		}
		start := int(p.L4Off)
		if p.Kind == packet.IPv4 {
			start = int(p.L3Off)
		}
		for i := start; i < int(p.L3End); i++ {
			for bit := 0; bit < 8; bit++ {
				b := append([]byte(nil), frame...)
				b[i] ^= 1 << bit
				var q packet.Parsed
				packet.Decode(b, &q)
				if !q.IsIP() {
					continue // the decoder refused it (length, IHL, …)
				}
				if strings.HasPrefix(name, "udp4") && binary.BigEndian.Uint16(b[q.L4Off+6:]) == 0 {
					continue // "no checksum"
				}
				if packet.ChecksumOK(&q, 0, true) {
					t.Fatalf("%s: byte %d bit %d flipped, checksum still OK", name, i, bit)
				}
				// Without software validation only the NIC's word counts.
				if !packet.ChecksumOK(&q, 0, false) || (q.Frag == 0 && packet.ChecksumOK(&q, packet.CsumL4Bad, false)) {
					t.Fatalf("%s: hints ignored", name)
				}
			}
		}
		if n := testing.AllocsPerRun(100, func() { packet.ChecksumOK(&p, 0, true) }); n != 0 {
			t.Errorf("%s: %v allocs", name, n)
		}
	}
}

// TestUDPWithoutChecksum: an IPv4 UDP checksum of 0 means none (RFC 768);
// the IPv4 header is still checked.
func TestUDPWithoutChecksum(t *testing.T) {
	frame := checksummedFrames()["udp4"]
	var p packet.Parsed
	packet.Decode(frame, &p)
	binary.BigEndian.PutUint16(frame[p.L4Off+6:], 0)
	frame[p.PayOff] ^= 0xff // and the payload changed: nothing notices
	packet.Decode(frame, &p)
	if !packet.ChecksumOK(&p, 0, true) {
		t.Error("UDP without a checksum fails")
	}
	frame[p.L3Off+8]-- // TTL, without updating the header checksum
	packet.Decode(frame, &p)
	if packet.ChecksumOK(&p, 0, true) {
		t.Error("a bad IPv4 header checksum passes when UDP has none")
	}
}

// The NIC's verdicts win over software: "good" skips the computation,
// "bad" fails the packet (L4 "bad" on a fragment is ignored: the NIC
// cannot check a fragment's L4 checksum).
func TestChecksumHints(t *testing.T) {
	frame := checksummedFrames()["tcp4"]
	var p packet.Parsed
	packet.Decode(frame, &p)
	bad := append([]byte(nil), frame...)
	bad[len(bad)-1] ^= 0xff
	var q packet.Parsed
	packet.Decode(bad, &q)
	for _, tt := range []struct {
		p    *packet.Parsed
		hint uint8
		want bool
	}{
		{&p, 0, true}, {&q, 0, false}, {&q, packet.CsumIPGood | packet.CsumL4Good, true},
		{&p, packet.CsumL4Bad, false}, {&p, packet.CsumIPBad, false}, {&q, packet.CsumIPGood, false},
	} {
		if got := packet.ChecksumOK(tt.p, tt.hint, true); got != tt.want {
			t.Errorf("hint %04b on a frame with a %s checksum: %v, want %v", tt.hint, map[bool]string{true: "good", false: "bad"}[tt.p == &p], got, tt.want)
		}
	}
	for ol, want := range map[uint64]uint8{
		0: 0, 1 << 7: packet.CsumIPGood, 1 << 4: packet.CsumIPBad, 1<<4 | 1<<7: packet.CsumIPGood,
		1 << 8: packet.CsumL4Good, 1 << 3: packet.CsumL4Bad, 1<<3 | 1<<8: packet.CsumL4Good,
		1<<7 | 1<<3: packet.CsumIPGood | packet.CsumL4Bad,
	} {
		if got := packet.CsumHint(ol); got != want {
			t.Errorf("CsumHint(%#x) = %04b, want %04b", ol, got, want)
		}
	}
}

// Differential: random IPv4 headers of random lengths against RFC 1071's
// 16-bit reference sum.
func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ref := func(b []byte) uint16 {
		var s uint32
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
		for s>>16 != 0 {
			s = s&0xffff + s>>16
		}
		return ^uint16(s)
	}
	for n := 0; n < 20000; n++ {
		frame := checksummedFrames()["udp4"]
		if n > 0 {
			// Random payload, then a correct or a corrupted checksum.
			var p packet.Parsed
			packet.Decode(frame, &p)
			for i := int(p.PayOff); i < int(p.L3End); i++ {
				frame[i] = byte(r.IntN(256))
			}
			l4 := frame[p.L4Off:p.L3End]
			binary.BigEndian.PutUint16(l4[6:], 0)
			pseudo := append(append([]byte(nil), frame[p.L3Off+12:p.L3Off+20]...), 0, 17, byte(len(l4)>>8), byte(len(l4)))
			c := ref(append(pseudo, l4...))
			if c == 0 {
				c = 0xffff
			}
			good := r.IntN(2) == 0
			if !good {
				c ^= uint16(1 << r.IntN(16))
				if c == 0 {
					continue
				}
			}
			binary.BigEndian.PutUint16(l4[6:], c)
			packet.Decode(frame, &p)
			if got := packet.ChecksumOK(&p, 0, true); got != good {
				t.Fatalf("case %d: ChecksumOK %v, reference says %v", n, got, good)
			}
		}
	}
}

func BenchmarkChecksumOK(b *testing.B) {
	for name, frame := range checksummedFrames() {
		if name != "udp4" && name != "tcp6" {
			continue
		}
		var p packet.Parsed
		packet.Decode(frame, &p)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !packet.ChecksumOK(&p, 0, true) {
					b.Fatal("bad")
				}
			}
		})
	}
}
