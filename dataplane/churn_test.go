package dataplane_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// churnRules: new TCP connections to port 80 from the outside, replies
// and the rest of each connection as ESTABLISHED.
const churnRules = `
-P INPUT DROP
-P OUTPUT DROP
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp --dport 80 -s 198.18.0.0/15 -m state --state NEW -j ACCEPT
-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
`

// churnSteps are the directions of pcapgen.TCPChurn's 8 frames per
// connection: SYN, SYN/ACK, ACK, data, its ACK, FIN/ACK, FIN/ACK, ACK
// (true: from the client, entering the outside port).
var churnSteps = [8]bool{true, false, true, true, false, true, false, true}

// BenchmarkChurnFresh opens and closes TCP connections whose tuples are
// never reused (issue 19's "fresh tuples every pass"): per op, 32
// connections of 8 packets each, as 8 single-direction bursts of 32. The
// table holds 1 M connections and the clock runs so that TIME_WAIT
// entries expire as the table fills: the steady state of a churn at this
// rate, new entries taking the places of expired ones. Checksums are
// validated (full); each frame's client address and port are rewritten
// with incremental checksum updates (RFC 1624), part of the cost measured.
func BenchmarkChurnFresh(b *testing.B) {
	tmpl := pcapgen.TCPChurn(1)
	ports := []dataplane.PortInfo{{Zone: 0, Out: 1, Hook: filter.HookInput}, {Zone: 0, Out: 0, Hook: filter.HookOutput}}
	const capacity = 1 << 20
	pl, _ := buildPipeline(b, churnRules, dataplane.Options{Ports: ports, Checksum: dataplane.ChecksumFull}, capacity)
	var burst dataplane.Burst
	var bufs [dataplane.BurstSize][80]byte
	// TIME_WAIT (120 s) passes while half the table fills.
	step := int64(120*time.Second) * dataplane.BurstSize / (capacity / 2)
	now := int64(time.Second)
	conn := 0
	run := func() {
		for s, fromClient := range churnSteps {
			for i := range dataplane.BurstSize {
				f := bufs[i][:copy(bufs[i][:], tmpl[s])]
				rewriteClient(f, fromClient, conn+i)
				burst.Decode(i, f, 0)
			}
			burst.N = dataplane.BurstSize
			in := uint16(0)
			if !fromClient {
				in = 1
			}
			pl.Process(&burst, in, now)
		}
		conn += dataplane.BurstSize
		now += step
	}
	for range 4 * capacity / dataplane.BurstSize / 8 {
		run() // the table at its steady state
	}
	pl.Publish()
	before := pl.Counters().Snapshot()
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	pl.Publish()
	after := pl.Counters().Snapshot()
	if d := after.Accepted - before.Accepted; d != uint64(b.N*8*dataplane.BurstSize) {
		b.Fatalf("%d packets accepted of %d: %+v", d, b.N*8*dataplane.BurstSize, after.Drops)
	}
	if burst.State[0] != conntrack.Established {
		b.Fatalf("last ACK: %v", burst.State[0])
	}
	perConn := float64(b.Elapsed().Nanoseconds()) / float64(b.N*dataplane.BurstSize)
	b.ReportMetric(perConn, "ns/conn")
	b.ReportMetric(1e9/perConn, "conn/s")
	b.ReportMetric(float64(pl.Tracker.Table.Len()), "entries")
}

// rewriteClient gives a pcapgen.TCPChurn frame connection k's client
// address (198.18.0.0/15) and port, updating the IPv4 and TCP checksums
// incrementally.
func rewriteClient(f []byte, fromClient bool, k int) {
	ip, tcp := f[14:34], f[34:]
	addrAt, portAt := 12, 0 // source address and port, from the client
	if !fromClient {
		addrAt, portAt = 16, 2
	}
	a := 198<<24 | 18<<16 | uint32(k>>14)&0x1ffff
	port := uint16(1024 + k&0x3fff)
	ipSum, tcpSum := binary.BigEndian.Uint16(ip[10:]), binary.BigEndian.Uint16(tcp[16:])
	for w, v := range [2]uint16{uint16(a >> 16), uint16(a)} {
		old := binary.BigEndian.Uint16(ip[addrAt+2*w:])
		ipSum, tcpSum = csumAdjust(ipSum, old, v), csumAdjust(tcpSum, old, v)
		binary.BigEndian.PutUint16(ip[addrAt+2*w:], v)
	}
	tcpSum = csumAdjust(tcpSum, binary.BigEndian.Uint16(tcp[portAt:]), port)
	binary.BigEndian.PutUint16(tcp[portAt:], port)
	binary.BigEndian.PutUint16(ip[10:], ipSum)
	binary.BigEndian.PutUint16(tcp[16:], tcpSum)
}

// csumAdjust updates a ones'-complement checksum for a 16-bit word that
// changed from old to new (RFC 1624, eqn. 3).
func csumAdjust(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}
