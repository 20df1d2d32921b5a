package packet_test

import (
	"encoding/hex"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/packet"
)

// mustHexDecode decodes hex with whitespace and "|"-separated annotations removed.
func mustHexDecode(s string) []byte {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		panic(err)
	}
	return out
}

const ethIPv4 = `
	02 00 00 00 00 02  02 00 00 00 00 01  0800 # eth dst, src, IPv4
`

var (
	// tcp4SYN: 198.18.0.1:40000 > 198.18.1.1:22 SYN
	tcp4SYN = mustHexDecode(ethIPv4 + `
		45 00 0028        # v4, IHL 5, tos, total length 40
		0001 0000         # id 1, no flags, offset 0
		40 06 0000        # ttl 64, proto TCP, checksum (unchecked)
		c6 12 00 01       # src 198.18.0.1
		c6 12 01 01       # dst 198.18.1.1
		9c40 0016         # sport 40000, dport 22
		00000001 00000000 # seq 1, ack 0
		50 02 ffff        # data offset 5, SYN, window
		0000 0000         # checksum, urgent
	`)
	// udp6: 2001:db8::1:5353 > 2001:db8::2:53 via a Hop-by-Hop header.
	udp6HBH = mustHexDecode(`
		02 00 00 00 00 02  02 00 00 00 00 01  86dd # eth, IPv6
		60 00 00 00  0014 00 40                    # v6, payload 20, next HBH, hop 64
		20010db8 00000000 00000000 00000001         # src
		20010db8 00000000 00000000 00000002         # dst
		11 00 01 04 00 00 00 00                     # HBH: next UDP, len 0 (8 bytes), PadN
		14e9 0035 000c 0000                         # sport 5353, dport 53, len 12, checksum
		61 62 63 64                                 # payload "abcd"
	`)
	// icmp4Echo in an 802.1Q tag (VID 100): 198.18.0.1 > 198.18.1.1 echo id 0x1234.
	icmp4EchoVLAN = mustHexDecode(`
		02 00 00 00 00 02  02 00 00 00 00 01  8100 # eth, 802.1Q
		0064 0800                                  # VID 100, IPv4
		45 00 001c 0002 0000 40 01 0000            # v4, total 28, proto ICMP
		c6 12 00 01  c6 12 01 01                   # src, dst
		08 00 0000 1234 0001                       # echo request, id 0x1234, seq 1
	`)
	arp = mustHexDecode(`
		ff ff ff ff ff ff  02 00 00 00 00 01  0806 # eth broadcast, ARP
		0001 0800 06 04 0001                       # ethernet/IPv4 request
		02 00 00 00 00 01 c6 12 00 01 000000000000 c6 12 01 01
	`)
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want packet.Parsed // Buf is ignored
	}{
		{"tcp4_syn", tcp4SYN, packet.Parsed{
			Kind: packet.IPv4, Proto: 6, TCPFlags: 0x02, EtherType: 0x0800,
			L3Off: 14, L4Off: 34, PayOff: 54, L3End: 54, FragID: 1,
			Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 18, 1, 1}, SrcPort: 40000, DstPort: 22,
		}},
		{"udp6_hop_by_hop", udp6HBH, packet.Parsed{
			Kind: packet.IPv6, Proto: 17, EtherType: 0x86dd,
			L3Off: 14, L4Off: 62, PayOff: 70, L3End: 74,
			Src:     [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1},
			Dst:     [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2},
			SrcPort: 5353, DstPort: 53,
		}},
		{"icmp4_echo_vlan", icmp4EchoVLAN, packet.Parsed{
			Kind: packet.IPv4, Proto: 1, EtherType: 0x0800, VLANs: 1, VLAN: 100,
			L3Off: 18, L4Off: 38, PayOff: 46, L3End: 46, FragID: 2,
			Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 18, 1, 1},
			SrcPort: 0x1234, DstPort: 0x1234, ICMPType: 8,
		}},
		{"arp", arp, packet.Parsed{Kind: packet.NonIP, EtherType: 0x0806, L3Off: 14, L4Off: 42, PayOff: 42, L3End: 42}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got packet.Parsed
			packet.Decode(tt.b, &got)
			got.Buf = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// mutate returns a copy of b with f applied.
func mutate(b []byte, f func([]byte) []byte) []byte {
	c := append([]byte(nil), b...)
	return f(c)
}

func TestDecodeMalformed(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want packet.Reason
	}{
		{"empty", nil, packet.ReasonTruncatedL2},
		{"short_ethernet", tcp4SYN[:13], packet.ReasonTruncatedL2},
		{"vlan_truncated", icmp4EchoVLAN[:16], packet.ReasonTruncatedL2},
		{"three_vlan_tags", mustHexDecode("020000000002 020000000001 8100 0001 8100 0002 8100 0003 0800"), packet.ReasonTooManyTags},
		{"ihl_below_5", mutate(tcp4SYN, func(b []byte) []byte { b[14] = 0x44; return b }), packet.ReasonBadIPv4},
		{"ihl_past_end", mutate(tcp4SYN, func(b []byte) []byte { b[14] = 0x4f; return b }), packet.ReasonBadIPv4},
		{"version_6_in_ipv4", mutate(tcp4SYN, func(b []byte) []byte { b[14] = 0x65; return b }), packet.ReasonBadIPv4},
		{"total_len_past_frame", mutate(tcp4SYN, func(b []byte) []byte { b[17] = 0x29; return b }), packet.ReasonBadIPv4},
		{"total_len_below_ihl", mutate(tcp4SYN, func(b []byte) []byte { b[17] = 0x10; return b }), packet.ReasonBadIPv4},
		{"tcp_offset_below_5", mutate(tcp4SYN, func(b []byte) []byte { b[46] = 0x40; return b }), packet.ReasonBadTCPOffset},
		{"tcp_offset_past_end", mutate(tcp4SYN, func(b []byte) []byte { b[46] = 0x60; return b }), packet.ReasonBadTCPOffset},
		{"tcp_truncated", mutate(tcp4SYN, func(b []byte) []byte { b[17] = 0x27; return b[:53] }), packet.ReasonTruncatedL4},
		{"ipv4_option_zero_length", mutate(tcp4SYN, func(b []byte) []byte {
			// IHL 6 with option 0x07 (record route) of length 0.
			o := append(append(append([]byte{}, b[:34]...), 0x07, 0x00, 0x00, 0x00), b[34:]...)
			o[14], o[17] = 0x46, 0x2c
			return o
		}), packet.ReasonBadIPv4},
		{"udp_length_past_end", mutate(udp6HBH, func(b []byte) []byte { b[67] = 0x40; return b }), packet.ReasonBadUDPLength},
		{"ipv6_payload_past_frame", mutate(udp6HBH, func(b []byte) []byte { b[19] = 0x40; return b }), packet.ReasonBadIPv6},
		{"ipv6_hbh_not_first", mutate(udp6HBH, func(b []byte) []byte { b[54] = 60; b[62-8] = 0; return b }), packet.ReasonBadExtHeader},
		{"ipv6_ext_past_end", mutate(udp6HBH, func(b []byte) []byte { b[55] = 9; return b }), packet.ReasonBadExtHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p packet.Parsed
			packet.Decode(tt.b, &p)
			if p.Kind != packet.Malformed || p.Reason != tt.want {
				t.Errorf("got %v reason %v; want malformed reason %v", p.Kind, p.Reason, tt.want)
			}
		})
	}
}

// TestDecodeFragments: a later fragment at any offset, even one inside
// the L4 header (8: RFC 1858's rewrite of the TCP flags), decodes as a
// later fragment; the pipeline holds it until its datagram is complete,
// and an overlap with the first fragment drops the datagram.
func TestDecodeFragments(t *testing.T) {
	var p packet.Parsed
	for _, blks := range []byte{1, 4, 10} {
		later := mutate(tcp4SYN, func(b []byte) []byte { b[21] = blks; return b })
		packet.Decode(later, &p)
		if p.Kind != packet.IPv4 || p.Frag != packet.FragLater || p.SrcPort != 0 || p.FragOff != uint16(blks)*8 {
			t.Errorf("later fragment at %d: got %+v", 8*int(blks), p)
		}
	}
	first := mutate(tcp4SYN, func(b []byte) []byte { b[20] = 0x20; return b })
	packet.Decode(first, &p)
	if p.Kind != packet.IPv4 || p.Frag != packet.FragFirst || p.DstPort != 22 || p.FragShort {
		t.Errorf("first fragment: got %+v", p)
	}
	// An IPv4 first fragment may end inside the TCP header: it is
	// FragShort, its ports unknown until its datagram is reassembled.
	short := mutate(tcp4SYN, func(b []byte) []byte {
		b[20] = 0x20 // MF
		b[17] = 0x24 // total length 36: 16 bytes of TCP
		return b[:50]
	})
	packet.Decode(short, &p)
	if p.Kind != packet.IPv4 || p.Frag != packet.FragFirst || !p.FragShort || p.DstPort != 0 {
		t.Errorf("short first fragment: got %+v", p)
	}
	// The next decode into the same Parsed (the fast path) resets it.
	packet.Decode(tcp4SYN, &p)
	if p.FragShort || p.FragRest != 0 {
		t.Errorf("FragShort %v FragRest %d left from the last decode", p.FragShort, p.FragRest)
	}
}

func TestDecodeTrailingPadding(t *testing.T) {
	// Ethernet pads short frames to 60 bytes: the padding is not payload.
	b := append(append([]byte(nil), icmp4EchoVLAN...), make([]byte, 14)...)
	var p packet.Parsed
	packet.Decode(b, &p)
	if got := len(p.Payload()); got != 0 {
		t.Errorf("payload of padded echo: got %d bytes; want 0", got)
	}
}

func TestDecodeNoAllocs(t *testing.T) {
	var p packet.Parsed
	for _, b := range [][]byte{tcp4SYN, udp6HBH, icmp4EchoVLAN, arp} {
		if n := testing.AllocsPerRun(1000, func() { packet.Decode(b, &p) }); n != 0 {
			t.Errorf("Decode allocates %v times per run; want 0", n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{tcp4SYN, udp6HBH, icmp4EchoVLAN, arp} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Parsed
		packet.Decode(b, &p)
		if p.Kind == packet.Malformed {
			if p.Reason == packet.ReasonNone {
				t.Fatal("malformed without a reason")
			}
			return
		}
		if p.Reason != packet.ReasonNone {
			t.Fatalf("kind %v with reason %v", p.Kind, p.Reason)
		}
		if !(int(p.L3Off) <= int(p.L4Off) && p.L4Off <= p.PayOff && p.PayOff <= p.L3End && int(p.L3End) <= len(b)) {
			t.Fatalf("offsets out of order or past the frame: l3 %d l4 %d pay %d end %d len %d",
				p.L3Off, p.L4Off, p.PayOff, p.L3End, len(b))
		}
		_ = p.Payload()
		_ = p.L4()
		if p.IsIP() {
			packet.ChecksumOK(&p, 0, true) // must not read out of bounds
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, bm := range []struct {
		name string
		b    []byte
	}{{"tcp4", tcp4SYN}, {"udp6_hbh", udp6HBH}, {"icmp4_vlan", icmp4EchoVLAN}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			var p packet.Parsed
			for b.Loop() {
				packet.Decode(bm.b, &p)
			}
			if p.Kind == packet.Malformed {
				b.Fatal(p.Reason)
			}
		})
	}
}

// TestDecodeFastMatchesFull is a differential test: wherever the fast path
// accepts a frame, the general decoder must produce exactly the same Parsed.
func TestDecodeFastMatchesFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := [][]byte{tcp4SYN, udp6HBH, icmp4EchoVLAN, arp, udp4}
	accepted := 0
	for i := 0; i < 200000; i++ {
		b := append([]byte(nil), seeds[rng.IntN(len(seeds))]...)
		// Flip a few bytes, mostly in the headers; sometimes truncate.
		for k := rng.IntN(4); k > 0; k-- {
			b[rng.IntN(min(len(b), 60))] = byte(rng.Uint32())
		}
		if rng.IntN(8) == 0 {
			b = b[:rng.IntN(len(b)+1)]
		}
		var fast, full packet.Parsed
		if !packet.DecodeFast(b, &fast) {
			continue
		}
		accepted++
		packet.DecodeFull(b, &full)
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("frame %x:\nfast %+v\nfull %+v", b, fast, full)
		}
	}
	if accepted < 1000 {
		t.Fatalf("fast path accepted only %d frames; the test exercises nothing", accepted)
	}
}

// udp4: 198.18.0.1:1024 > 198.19.0.1:9, 4 bytes of payload.
var udp4 = mustHexDecode(ethIPv4 + `
	45 00 0020 0003 4000 40 11 0000  # v4, total 32, DF, proto UDP
	c6 12 00 01  c6 13 00 01         # src, dst
	0400 0009 000c 0000              # sport 1024, dport 9, length 12
	01 02 03 04                      # payload
`)
