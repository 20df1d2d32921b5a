// Package pcapgen writes the synthetic workloads dpfw's benchmarks and
// end-to-end tests replay through net_pcap: fixed MACs, addresses in
// 198.18.0.0/15 only (RFC 2544's benchmarking range), deterministic order.
package pcapgen

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Fixed MACs make captures reproducible.
var (
	ClientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	ServerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// ClientIP returns the i-th client address in 198.18.0.0/16 (i < 65536).
func ClientIP(i int) net.IP { return net.IPv4(198, 18, byte(i>>8), byte(i)).To4() }

// ServerIP returns the i-th server address in 198.19.0.0/16 (i < 65536).
func ServerIP(i int) net.IP { return net.IPv4(198, 19, byte(i>>8), byte(i)).To4() }

// Frame serializes layers with lengths and checksums computed.
func Frame(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for _, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			for _, x := range ls {
				if t, ok := x.(interface {
					SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
				}); ok {
					_ = t.SetNetworkLayerForChecksum(n)
				}
			}
		}
	}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(fmt.Sprintf("pcapgen: serialize: %v", err))
	}
	return append([]byte(nil), buf.Bytes()...)
}

// UDP4 builds a UDP/IPv4 frame with payload bytes of data.
func UDP4(srcMAC, dstMAC net.HardwareAddr, src, dst net.IP, sport, dport uint16, payload int) []byte {
	return Frame(
		&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst, Id: 1},
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)},
		gopacket.Payload(make([]byte, payload)),
	)
}

// UDPFlows returns n 64-byte (60 + FCS) UDP frames, one per flow, client i
// port 10000+i%50000 to server i%256 port 9. With bothWays, each flow's
// packet is followed by its reply.
func UDPFlows(n int, bothWays bool) [][]byte {
	out := make([][]byte, 0, n*2)
	for i := 0; i < n; i++ {
		c, s := ClientIP(i%65536), ServerIP(i/65536)
		sport := uint16(10000 + i%50000)
		out = append(out, UDP4(ClientMAC, ServerMAC, c, s, sport, 9, 18))
		if bothWays {
			out = append(out, UDP4(ServerMAC, ClientMAC, s, c, 9, sport, 18))
		}
	}
	return out
}

// Write writes frames to a pcap file (Ethernet link type), one microsecond apart.
func Write(path string, frames [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, b := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t.Add(time.Duration(i) * time.Microsecond), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Read returns every frame of a pcap file.
func Read(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		b, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, append([]byte(nil), b...))
	}
	return out, nil
}

// TCP4 returns a TCP/IPv4 frame with checksums right; flags is a string of
// S, A, F, R, P and U. Frames from a 198.19.0.0/16 (server) address go from
// ServerMAC to ClientMAC, the others the other way.
func TCP4(src, dst net.IP, sport, dport uint16, flags string, seq, ack uint32, payload int) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 65535}
	SetTCPFlags(t, flags)
	srcMAC, dstMAC := ClientMAC, ServerMAC
	if src[0] == 198 && src[1] == 19 {
		srcMAC, dstMAC = ServerMAC, ClientMAC
	}
	return Frame(&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.To4(), DstIP: dst.To4()},
		t, gopacket.Payload(make([]byte, payload)))
}

// TCPChurn returns n complete TCP connections, one after the other: SYN,
// SYN/ACK, ACK, 18 bytes of data, its ACK, FIN/ACK, FIN/ACK, ACK (8 frames
// each). Replayed forever, every pass reopens each connection from TIME_WAIT.
func TCPChurn(n int) [][]byte {
	out := make([][]byte, 0, 8*n)
	tcp := func(fromClient bool, i int, flags string, seq, ack uint32, payload int) []byte {
		c, s := ClientIP(i%65536), ServerIP(i/65536)
		sport := uint16(10000 + i%50000)
		if !fromClient {
			return TCP4(s, c, 80, sport, flags, seq, ack, payload)
		}
		return TCP4(c, s, sport, 80, flags, seq, ack, payload)
	}
	for i := 0; i < n; i++ {
		// Each pass must use sequence numbers above the previous pass's
		// for the TIME_WAIT reopen to be in window; a fixed ISN works
		// because netfilter (and dpfw) reopen on a SYN in TIME_WAIT.
		cs, ss := uint32(1000), uint32(5000)
		out = append(out,
			tcp(true, i, "S", cs, 0, 0),
			tcp(false, i, "SA", ss, cs+1, 0),
			tcp(true, i, "A", cs+1, ss+1, 0),
			tcp(true, i, "PA", cs+1, ss+1, 18),
			tcp(false, i, "A", ss+1, cs+19, 0),
			tcp(true, i, "FA", cs+19, ss+1, 0),
			tcp(false, i, "FA", ss+1, cs+20, 0),
			tcp(true, i, "A", cs+20, ss+2, 0),
		)
	}
	return out
}

// SetTCPFlags sets t's flags from letters: S, A, F, R, P and U.
func SetTCPFlags(t *layers.TCP, flags string) {
	for _, f := range flags {
		switch f {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'R':
			t.RST = true
		case 'P':
			t.PSH = true
		case 'U':
			t.URG = true
		}
	}
}

// FixChecksums recomputes the IPv4 header checksum and the TCP, UDP, ICMP
// or ICMPv6 checksum of an edited frame (not of fragments), in place, so
// that tests which rewrite ports or addresses send valid packets.
func FixChecksums(frame []byte) {
	var p packet.Parsed
	packet.Decode(frame, &p)
	if !p.IsIP() {
		return
	}
	if p.Kind == packet.IPv4 {
		ip := frame[p.L3Off:p.L4Off]
		if p.Frag != 0 {
			ip = frame[p.L3Off : int(p.L3Off)+int(frame[p.L3Off]&0x0f)*4]
		}
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], header.Checksum(ip, 0))
	}
	if p.Frag != 0 {
		return
	}
	l4 := frame[p.L4Off:p.L3End]
	var off int
	var sum uint32
	src, dst := frame[p.L3Off+12:p.L3Off+16], frame[p.L3Off+16:p.L3Off+20]
	if p.Kind == packet.IPv6 {
		src, dst = frame[p.L3Off+8:p.L3Off+24], frame[p.L3Off+24:p.L3Off+40]
	}
	switch p.Proto {
	case header.ProtoTCP:
		off, sum = 16, header.PseudoHeaderSum(src, dst, p.Proto, len(l4))
	case header.ProtoUDP:
		off, sum = 6, header.PseudoHeaderSum(src, dst, p.Proto, len(l4))
	case header.ProtoICMPv6:
		off, sum = 2, header.PseudoHeaderSum(src, dst, p.Proto, len(l4))
	case header.ProtoICMP:
		off = 2
	default:
		return
	}
	binary.BigEndian.PutUint16(l4[off:], 0)
	c := header.Checksum(l4, sum)
	if c == 0 && p.Proto == header.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}
