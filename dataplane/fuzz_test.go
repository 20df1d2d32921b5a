package dataplane_test

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// fuzzRules: the tutorial's shape. Port 0 is the client side (outside),
// port 1 the server side; NEW connections may only start from port 0.
const fuzzRules = `
-P FORWARD DROP
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i outside -m conntrack --ctstate NEW -j ACCEPT
`

var (
	fuzzClient = net.IP{198, 18, 0, 1}
	fuzzServer = net.IP{198, 19, 0, 1}
)

// fuzzFrame turns 6 bytes into a packet between the fuzz client and
// server: b[0] picks the direction (bit 0), protocol (bits 1-2: TCP, UDP,
// ICMP echo, ICMP error quoting the flow) and whether the checksum is
// broken (bit 3); b[1] is the TCP flag byte; b[2], b[3] nudge the sequence
// and acknowledgement numbers; b[4] the payload length; b[5] the ports.
func fuzzFrame(b []byte, seq, ack *[2]uint32) ([]byte, uint16) {
	dir := int(b[0] & 1)
	src, dst := fuzzClient, fuzzServer
	sport, dport := layers.TCPPort(40000+uint16(b[5]&3)), layers.TCPPort(80)
	if dir == 1 {
		src, dst, sport, dport = dst, src, dport, sport
	}
	eth := &layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src, DstIP: dst}
	payload := gopacket.Payload(make([]byte, int(b[4])%64))
	var f []byte
	switch (b[0] >> 1) & 3 {
	case 0:
		ip.Protocol = layers.IPProtocolTCP
		seq[dir] += uint32(int8(b[2]))
		ack[dir] += uint32(int8(b[3]))
		fl := b[1]
		t := &layers.TCP{SrcPort: sport, DstPort: dport, Seq: seq[dir], Ack: ack[dir], Window: 8192,
			FIN: fl&1 != 0, SYN: fl&2 != 0, RST: fl&4 != 0, PSH: fl&8 != 0, ACK: fl&16 != 0, URG: fl&32 != 0}
		f = pcapgen.Frame(eth, ip, t, payload)
		seq[dir] += uint32(len(payload))
	case 1:
		ip.Protocol = layers.IPProtocolUDP
		f = pcapgen.Frame(eth, ip, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, payload)
	case 2:
		ip.Protocol = layers.IPProtocolICMPv4
		typ := uint8(8)
		if dir == 1 {
			typ = 0
		}
		f = pcapgen.Frame(eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: uint16(b[5]), Seq: 1}, payload)
	default:
		// An ICMP error quoting a TCP segment of the flow, sent back.
		quoted := pcapgen.Frame(eth, &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: dst, DstIP: src},
			&layers.TCP{SrcPort: dport, DstPort: sport, Seq: seq[1-dir]})[14:]
		ip.Protocol = layers.IPProtocolICMPv4
		f = pcapgen.Frame(eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, b[1]%16)}, gopacket.Payload(quoted[:28]))
	}
	if b[0]&8 != 0 {
		f[len(f)-1] ^= 0x5a // a wrong checksum (or a changed byte of the last header)
	}
	return f, uint16(dir)
}

// FuzzTrack feeds sequences of packets of one client/server pair through a
// pipeline with a small connection table, checking after every packet what
// must hold whatever the sequence: no panic; the table's count matches its
// per-protocol counts and stays within capacity; a packet from the server
// side is accepted only as ESTABLISHED or RELATED; no connection was ever
// started from the server side.
func FuzzTrack(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 0, 0, 1, 18, 0, 1, 0, 0, 0, 16, 1, 0, 0, 0, 0, 24, 0, 0, 10, 0, 1, 17, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 0, 0, 0, 0, 2, 0, 0, 0, 4, 1, 3, 0, 0, 0, 0, 0, 6, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{8, 2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 18, 0, 1, 0, 0, 7, 4, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		pl, _ := buildPipeline(t, fuzzRules, dataplane.Options{Ports: []dataplane.PortInfo{{Out: 1}, {Out: 0}}}, 4)
		tr := pl.Tracker
		defer tr.Table.Free()
		var seq, ack [2]uint32
		seq[0], seq[1] = 1000, 50000
		now := int64(1e9)
		var b dataplane.Burst
		for n := 0; len(data) >= 6 && n < 64; n++ {
			frame, in := fuzzFrame(data[:6], &seq, &ack)
			now += int64(data[4]) * int64(data[5]) * 1e7 // up to ~11 min between packets
			data = data[6:]
			b.N = 1
			b.Decode(0, frame, 0)
			pl.Process(&b, in, now)
			st := b.State[0]
			if in == 1 && b.Verdict[0] == filter.Accept && st != conntrack.Established && st != conntrack.Related {
				t.Fatalf("a server-side packet was accepted in state %v: %v", st, &b.Parsed[0])
			}
			total := int64(0)
			for _, n := range tr.Stats.ByProto {
				if n < 0 {
					t.Fatalf("negative entry count %v", tr.Stats.ByProto)
				}
				total += n
			}
			if total != int64(tr.Table.Len()) || tr.Table.Len() > tr.Table.Cap() {
				t.Fatalf("table holds %d entries, counts say %d, capacity %d", tr.Table.Len(), total, tr.Table.Cap())
			}
			for i := 0; i < tr.Table.Cap(); i++ {
				if e, ok := tr.Entry(uint32(i)); ok && net.IP(e.Orig.Src[:4]).Equal(fuzzServer) {
					t.Fatalf("a connection started from the server side: %s", e.String())
				}
			}
		}
	})
}

// FuzzFragments feeds fragment sequences: each 4 input bytes are one
// fragment of one of four datagrams (b[0] bits 0-1: which; bit 2: MF;
// bit 3: ends the burst; bits 4-7: time passing, in seconds), at offset
// b[1]*8, of b[2]%64*8 bytes, its payload byte b[3]. Whatever comes, every
// frame is decided exactly once (sent with the burst, held and released,
// or dropped), no slot is held twice, and the counters balance.
func FuzzFragments(f *testing.F) {
	f.Add([]byte{0x04, 0, 8, 1, 0x08, 8, 8, 2})
	f.Add([]byte{0x04, 8, 8, 1, 0x04, 0, 8, 2, 0x08, 16, 4, 3})
	f.Add([]byte{0x04, 0, 8, 1, 0xf8, 4, 8, 2, 0x05, 0, 2, 0, 0x0d, 2, 2, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		pl, _ := buildPipeline(t, fuzzRules, dataplane.Options{Ports: []dataplane.PortInfo{{Out: 1}, {Out: 0}}}, 256)
		full := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, fuzzClient, fuzzServer, 4000, 53, 2048)
		decided := map[int]bool{}
		held := newHeldFrames(t)
		decide := func(i int, _ bool, _ filter.DropReason) {
			if decided[i] {
				t.Fatalf("frame %d decided twice", i)
			}
			decided[i] = true
		}
		var b dataplane.Burst
		now := int64(time.Second)
		n := 0
		flush := func() {
			pl.Process(&b, 0, now)
			held.burst(pl, &b, n-b.N, decide)
			b.N = 0
		}
		for ; len(in) >= 4 && n < 4096; in = in[4:] {
			off, size := int(in[1])*8, int(in[2]%64)*8
			if off+size > 2048 {
				size = 2048 - off
			}
			frame := fragment(full, uint16(in[0]&3)+1, off, size, in[0]&4 != 0)
			frame[len(frame)-1] ^= in[3]
			b.Decode(b.N, frame, 0)
			b.N++
			n++
			if in[0]&8 != 0 || b.N == dataplane.BurstSize {
				flush()
			}
			if d := int64(in[0] >> 4); d != 0 {
				if b.N > 0 {
					flush()
				}
				now += d * int64(time.Second)
				pl.Idle(now)
				held.drain(pl, decide)
			}
		}
		if b.N > 0 {
			flush()
		}
		pl.FlushFragments()
		held.drain(pl, decide)
		if len(decided) != n || len(held.slot) != 0 {
			t.Fatalf("%d frames, %d decided, %d still held", n, len(decided), len(held.slot))
		}
		pl.Publish()
		st := pl.Counters().Snapshot()
		if st.Accepted+st.TotalDrops() != uint64(n) {
			t.Fatalf("accepted %d + dropped %d != %d frames", st.Accepted, st.TotalDrops(), n)
		}
	})
}
