package e2e

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// Base is the config end-to-end runs start from: dpfw's defaults with no
// hugepages, 256 MB of EAL memory, a small mempool, one worker on CPU 1
// that sleeps when idle (the machine is shared with the traffic), the
// API on (Start picks its port) and an empty rule set allowed.
func Base() config.Config {
	c := config.Default()
	c.EAL.Hugepages, c.EAL.MemoryMB = "no", 256
	c.Mempool.Mbufs, c.Mempool.Cache = 16383, 64
	c.Workers.IdlePolls, c.Workers.IdleSleep = 64, 50*time.Microsecond
	c.Rules.AllowEmpty = true
	return c
}

// Iptables sets an inline iptables rule set (with iptables6, "" for none,
// an ip6tables one beside it).
func Iptables(c *config.Config, iptables, iptables6 string) {
	c.Rules.Iptables, c.Rules.Iptables6, c.Rules.AllowEmpty = iptables, iptables6, false
}

// Pcaps are the files of a PcapPair.
type Pcaps struct {
	// In is what port a replays; Out what b transmitted (forwarded from
	// a) and Back what a transmitted (forwarded from b, which replays
	// nothing).
	In, Out, Back string
}

// PcapPair makes c's ports a and b net_pcap devices in dir, linked as a
// bump in the wire: a replays frames (written to dir/in.pcap), b an empty
// capture.
func PcapPair(c *config.Config, dir string, frames [][]byte) (Pcaps, error) {
	f := Pcaps{In: filepath.Join(dir, "in.pcap"), Out: filepath.Join(dir, "out.pcap"), Back: filepath.Join(dir, "back.pcap")}
	empty := filepath.Join(dir, "empty.pcap")
	if err := pcapgen.Write(f.In, frames); err != nil {
		return f, err
	}
	if err := pcapgen.Write(empty, nil); err != nil {
		return f, err
	}
	c.Ports = []config.Port{
		{Name: "a", Device: fmt.Sprintf("net_pcap0,rx_pcap=%s,tx_pcap=%s", f.In, f.Back)},
		{Name: "b", Device: fmt.Sprintf("net_pcap1,rx_pcap=%s,tx_pcap=%s", empty, f.Out)},
	}
	c.Links = []config.Link{{Name: "wire", Ports: []string{"a", "b"}}}
	c.Workers.IdleSleep = 100 * time.Microsecond
	c.Mempool.Mbufs = 8191
	return f, nil
}

// SourceSink makes c's ports src, replaying the capture at pcap forever
// (net_pcap infinite_rx, which holds it all in mbufs), and sink, a
// net_null that drops what it is given, linked src → sink with sink
// inside: the benchmark set-up.
func SourceSink(c *config.Config, pcap string) {
	c.Ports = []config.Port{
		{Name: "src", Device: "net_pcap0,rx_pcap=" + pcap + ",infinite_rx=1"},
		{Name: "sink", Device: "net_null0,no-rx=1"},
	}
	c.Links = []config.Link{{Name: "wire", Ports: []string{"src", "sink"}, Inside: "sink"}}
}

// TapPair makes c's ports outside and inside net_tap devices whose kernel
// interfaces are named ifOut and ifIn, linked with inside as the inside.
func TapPair(c *config.Config, ifOut, ifIn string) {
	c.Ports = []config.Port{
		{Name: "outside", Device: "net_tap0,iface=" + ifOut},
		{Name: "inside", Device: "net_tap1,iface=" + ifIn},
	}
	c.Links = []config.Link{{Name: "wire", Ports: []string{"outside", "inside"}, Inside: "inside"}}
}
