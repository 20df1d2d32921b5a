package conntrack_test

import (
	"net/netip"
	"testing"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/packet/header"
)

// TestMakeTuple: a tuple built from addresses and ports carries them, the
// zone, and an ICMP identifier, type and code (its reverse is the
// reply's); mapped addresses are IPv4, two families are refused.
func TestMakeTuple(t *testing.T) {
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	tu, ok := conntrack.MakeTuple(a, b, header.ProtoICMP, 7, uint16(header.ICMPv4Echo)<<8, 3)
	if !ok || tu.SrcAddr() != a || tu.DstAddr() != b || tu.Family != 4 || tu.Zone != 3 || tu.SrcPort != 7 {
		t.Fatalf("%v %v", tu, ok)
	}
	if typ, code := tu.ICMP(); typ != header.ICMPv4Echo || code != 0 {
		t.Errorf("ICMP %d/%d", typ, code)
	}
	if r := tu.Reverse(); func() uint8 { typ, _ := r.ICMP(); return typ }() != header.ICMPv4EchoReply {
		t.Errorf("reverse of an echo: %v", r)
	}
	tu, ok = conntrack.MakeTuple(netip.MustParseAddr("::ffff:198.18.0.1"), b, 47, 1, 2, 0)
	if !ok || tu.Family != 4 || tu.SrcPort != 0 || tu.DstPort != 0 {
		t.Errorf("mapped address, no ports: %v %v", tu, ok)
	}
	if _, ok := conntrack.MakeTuple(a, netip.MustParseAddr("2001:2::1"), header.ProtoTCP, 1, 2, 0); ok {
		t.Error("two families accepted")
	}
}
