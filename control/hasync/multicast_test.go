package hasync

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/hasync/wire"
	"github.com/dpfw/dpfw/packet/header"
)

// TestMulticastIPv6: two nodes in two network namespaces joined by a veth
// pair sync over an IPv6 multicast group (joined on sync.interface, as
// IPv6 multicast needs), both ways, and their own messages do not come
// back to them.
func TestMulticastIPv6(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	id := os.Getpid() % 100000
	nsA, nsB := fmt.Sprintf("dpfwt-ma%d", id), fmt.Sprintf("dpfwt-mb%d", id)
	ifA, ifB := fmt.Sprintf("ma%d", id), fmt.Sprintf("mb%d", id)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	for _, ns := range []string{nsA, nsB} {
		run("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	for _, s := range []struct{ ns, iface, addr string }{{nsA, ifA, "2001:2::1/64"}, {nsB, ifB, "2001:2::2/64"}} {
		run("-n", s.ns, "addr", "add", s.addr, "dev", s.iface, "nodad")
		run("-n", s.ns, "link", "set", s.iface, "up")
	}
	// IPv6 adds an interface's multicast route (ff00::/8) once the link
	// is up on both ends, a moment after the addresses: sending to the
	// group before it is "network is unreachable".
	for _, s := range []struct{ ns, iface string }{{nsA, ifA}, {nsB, ifB}} {
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out, _ := exec.Command("ip", "-n", s.ns, "-6", "route", "show", "table", "local", "type", "multicast", "dev", s.iface).Output()
			if strings.Contains(string(out), "ff00::/8") {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("no IPv6 multicast route on %s in %s", s.iface, s.ns)
			}
		}
	}
	group := netip.MustParseAddrPort("[ff12::3780]:3780")
	node := func(ns, iface, local, peer string, zone uint16) *Node {
		n, err := New(Config{Local: netip.MustParseAddrPort(local), Peer: netip.MustParseAddrPort(peer), Group: group,
			Interface: iface, Netns: ns, MaxEntries: 100, Zone: zone})
		if err != nil {
			t.Fatal(err)
		}
		go n.Receive()
		t.Cleanup(func() { n.Close() })
		return n
	}
	a := node(nsA, ifA, "[2001:2::1]:3780", "[2001:2::2]:3780", 1)
	b := node(nsB, ifB, "[2001:2::2]:3780", "[2001:2::1]:3780", 2)
	ea := entry(t, "2001:2::10", "2001:2::20", header.ProtoUDP, 5000, 53)
	eb := entry(t, "2001:2::30", "2001:2::40", header.ProtoTCP, 6000, 443)
	eb.TCPState = 3 // ESTABLISHED
	a.OfferEntry(wire.CTNew, &ea)
	b.OfferEntry(wire.CTNew, &eb)
	a.Flush()
	b.Flush()
	waitFor(t, "each node's connection at the other", func() bool { return a.External.Len() == 1 && b.External.Len() == 1 })
	if got := b.External.List()[0].Entry.Orig.SrcAddr(); got != netip.MustParseAddr("2001:2::10") {
		t.Errorf("b has %v; want a's connection", got)
	}
	if a.Stats.Foreign.Load()+b.Stats.Foreign.Load() != 0 {
		t.Errorf("foreign datagrams: a %d, b %d (its own looped back?)", a.Stats.Foreign.Load(), b.Stats.Foreign.Load())
	}
}
