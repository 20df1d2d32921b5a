package replay

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

const testConfig = `
eal: {file_prefix: replay, hugepages: "no"}
ports:
  - {name: a, device: "net_pcap0,rx_pcap=/dev/null"}
  - {name: b, device: "net_pcap1,rx_pcap=/dev/null"}
links: [{name: wire, ports: [a, b]}]
workers: {cpus: [1]}
rules:
  iptables: |
    -P FORWARD DROP
    -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
    -A FORWARD -i a -p udp --dport 53 -m state --state NEW -j ACCEPT
`

// capture writes frames as a pcap, a millisecond apart.
func capture(t *testing.T, frames [][]byte) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return &buf
}

// fragment is bytes [off, off+n) of a UDP/IPv4 frame's IP payload.
func fragment(f []byte, off, n int, more bool) []byte {
	b := append(append([]byte(nil), f[:34]...), f[34+off:34+off+n]...)
	b[16], b[17] = byte((20+n)>>8), byte(20+n)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	b[20], b[21] = byte(fo>>8), byte(fo)
	pcapgen.FixChecksums(b)
	return b
}

// TestRunFates: a query, its answer, a refused query and a datagram whose
// fragments come last first: each frame's fate in frame order, the held
// fragment's after its datagram completed, and what would be forwarded in
// the order it would leave.
func TestRunFates(t *testing.T) {
	cfg, err := config.Load("replay.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	q := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 53, 20)
	ans := pcapgen.UDP4(pcapgen.ServerMAC, pcapgen.ClientMAC, s, c, 53, 5000, 20)
	refused := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5001, 54, 20)
	big := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5002, 53, 400)
	frames := [][]byte{q, ans, refused, fragment(big, 208, 200, false), fragment(big, 0, 208, true)}
	var got []string
	var fwd [][]byte
	sum, err := Run(cfg, []Port{{Name: "a", MAC: net.HardwareAddr(pcapgen.ClientMAC), IfIndex: -1}, {Name: "b", MAC: net.HardwareAddr(pcapgen.ServerMAC), IfIndex: -1}},
		capture(t, frames), Sink{
			Fate:    func(f *Fate) error { got = append(got, f.String()); return nil },
			Forward: func(_ gopacket.CaptureInfo, b []byte) error { fwd = append(fwd, append([]byte(nil), b...)); return nil },
		})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1 12:00:00.000000 in a: ACCEPT NEW by FORWARD#2",
		"2 12:00:00.001000 in b: ACCEPT ESTABLISHED by FORWARD#1",
		"3 12:00:00.002000 in a: DROP NEW by FORWARD policy reason rule",
		"4 12:00:00.003000 in a: ACCEPT NEW by FORWARD#2 (-A FORWARD -i a -p udp -m udp --dport 53 -m state --state NEW -j ACCEPT) [fragment held for its datagram]",
		"5 12:00:00.004000 in a: ACCEPT NEW by FORWARD#2",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d fates:\n%s", len(got), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("fate %d:\n  %s\nwant\n  %s…", i+1, got[i], want[i])
		}
	}
	if sum.Frames != 5 || sum.Accepted != 4 || sum.Dropped != 1 {
		t.Errorf("summary %+v", sum)
	}
	// The held fragment leaves before the one that completed its datagram.
	if len(fwd) != 4 || !bytes.Equal(fwd[2], frames[3]) || !bytes.Equal(fwd[3], frames[4]) {
		t.Errorf("forwarded %d frames, in the wrong order", len(fwd))
	}
}

// TestRunPcapng: in a pcapng capture the interface says the port
// (--port NAME=IFINDEX), whatever the MACs.
func TestRunPcapng(t *testing.T) {
	cfg, err := config.Load("replay.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	intf := pcapgo.DefaultNgInterface
	intf.Name, intf.LinkType = "b-side", layers.LinkTypeEthernet
	if _, err := w.AddInterface(intf); err != nil {
		t.Fatal(err)
	}
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	// Both frames carry the client's MAC: only the interface tells them apart.
	q := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 53, 20)
	ans := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, s, c, 53, 5000, 20)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i, f := range [][]byte{q, ans} {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f), InterfaceIndex: i}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	_, err = Run(cfg, []Port{{Name: "a", IfIndex: 0}, {Name: "b", IfIndex: 1}}, &buf, Sink{Fate: func(f *Fate) error {
		got = append(got, f.In+" "+f.Verdict+" "+f.State)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ", ") != "a ACCEPT NEW, b ACCEPT ESTABLISHED" {
		t.Errorf("fates %q; want the query in on a, the answer on b", got)
	}
	// A frame of another link type is an error naming it.
	buf.Reset()
	w, _ = pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	intf.LinkType = layers.LinkTypeRaw
	_, _ = w.AddInterface(intf)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(q) - 14, Length: len(q) - 14, InterfaceIndex: 1}, q[14:])
	_ = w.Flush()
	if _, err := Run(cfg, []Port{{Name: "a", IfIndex: Any}}, &buf, Sink{Fate: func(*Fate) error { return nil }}); err == nil || !strings.Contains(err.Error(), "frame 1: link type") {
		t.Errorf("a raw-IP frame: %v; want an error naming frame 1", err)
	}
}
