package reject_test

import (
	"net"
	"testing"

	"github.com/dpfw/dpfw/dataplane/reject"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func parse(t *testing.T, b []byte) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	packet.Decode(b, p)
	if !p.IsIP() {
		t.Fatalf("not IP: %v", p)
	}
	return p
}

// decodeAnswer parses an answer with gopacket, verifying checksums.
func decodeAnswer(t *testing.T, b []byte) gopacket.Packet {
	t.Helper()
	pk := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		t.Fatalf("answer does not decode: %v", el.Error())
	}
	return pk
}

func TestTCPResetAnswersSYN(t *testing.T) {
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	syn := pcapgen.Frame(&layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: c, DstIP: s},
		&layers.TCP{SrcPort: 40000, DstPort: 23, Seq: 1000, SYN: true, Window: 100})
	p := parse(t, syn)
	if !reject.Answerable(p) {
		t.Fatal("a SYN must be answerable")
	}
	var buf [2048]byte
	n := reject.Build(buf[:], p, reject.TCPReset)
	pk := decodeAnswer(t, buf[:n])
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ip.SrcIP.Equal(s) || !ip.DstIP.Equal(c) || tcp.SrcPort != 23 || tcp.DstPort != 40000 ||
		!tcp.RST || !tcp.ACK || tcp.Ack != 1001 || tcp.Seq != 0 {
		t.Errorf("RST answer wrong: %v %v", ip, tcp)
	}
	eth := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth.DstMAC.String() != pcapgen.ClientMAC.String() {
		t.Errorf("answer goes to %v; want the sender %v", eth.DstMAC, pcapgen.ClientMAC)
	}
	// Verify the checksums by serializing the decoded layers again.
	sb := gopacket.NewSerializeBuffer()
	_ = tcp.SetNetworkLayerForChecksum(ip)
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	re := gopacket.NewPacket(sb.Bytes(), layers.LayerTypeIPv4, gopacket.Default)
	if re.Layer(layers.LayerTypeTCP).(*layers.TCP).Checksum != tcp.Checksum || re.Layer(layers.LayerTypeIPv4).(*layers.IPv4).Checksum != ip.Checksum {
		t.Errorf("bad checksums in the answer")
	}
}

func TestPortUnreachable(t *testing.T) {
	for _, fam := range []struct{ c, s net.IP }{{pcapgen.ClientIP(1), pcapgen.ServerIP(1)}, {net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")}} {
		et := layers.EthernetTypeIPv4
		var ipl gopacket.SerializableLayer = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: fam.c, DstIP: fam.s}
		if fam.c.To4() == nil {
			et = layers.EthernetTypeIPv6
			ipl = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: fam.c, DstIP: fam.s}
		}
		u := pcapgen.Frame(&layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: et},
			ipl, &layers.UDP{SrcPort: 5353, DstPort: 53}, gopacket.Payload(make([]byte, 2000)))
		p := parse(t, u)
		var buf [2048]byte
		n := reject.Build(buf[:], p, reject.PortUnreachable)
		pk := decodeAnswer(t, buf[:n])
		if fam.c.To4() != nil {
			ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if ic.TypeCode.Type() != 3 || ic.TypeCode.Code() != 3 || n > 14+576 {
				t.Errorf("ICMPv4 answer: %v, %d bytes", ic.TypeCode, n)
			}
		} else {
			ic := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			if ic.TypeCode.Type() != 1 || ic.TypeCode.Code() != 4 || n > 14+1280 {
				t.Errorf("ICMPv6 answer: %v, %d bytes", ic.TypeCode, n)
			}
		}
	}
}

func TestNotAnswerable(t *testing.T) {
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	eth := &layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: layers.EthernetTypeIPv4}
	rst := pcapgen.Frame(eth, &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: c, DstIP: s},
		&layers.TCP{SrcPort: 1, DstPort: 2, RST: true})
	icmpErr := pcapgen.Frame(eth, &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: c, DstIP: s},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(make([]byte, 28)))
	mcast := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, net.IPv4(224, 0, 0, 251).To4(), 5353, 5353, 4)
	for name, b := range map[string][]byte{"rst": rst, "icmp error": icmpErr, "multicast": mcast} {
		if reject.Answerable(parse(t, b)) {
			t.Errorf("%s must not be answered", name)
		}
	}
}

func TestBuildNoAllocs(t *testing.T) {
	p := parse(t, pcapgen.UDPFlows(1, false)[0])
	var buf [2048]byte
	if n := testing.AllocsPerRun(1000, func() { reject.Build(buf[:], p, reject.PortUnreachable) }); n != 0 {
		t.Errorf("Build allocates %v", n)
	}
}
