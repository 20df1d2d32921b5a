package conntrack_test

import (
	"testing"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// BenchmarkTrackSYN measures the tracker on first packets of new TCP
// connections from distinct sources: "new" with room in the table
// (ordinary NEW traffic) and "flood" with the table full of half-open
// entries, so every SYN evicts one (early drop) before it is inserted.
// The target: the flood costs no more per packet than ordinary NEW traffic.
func BenchmarkTrackSYN(b *testing.B) {
	const n = 1 << 18
	frames, _ := pcapgen.SYNFlood(n, 0)
	ps := make([]packet.Parsed, 0, n)
	for _, f := range frames[3:] {
		var p packet.Parsed
		packet.Decode(f, &p)
		ps = append(ps, p)
	}
	for _, bm := range []struct {
		name     string
		capacity int
	}{{"new", 1 << 22}, {"flood", 1 << 16}} {
		b.Run(bm.name, func(b *testing.B) {
			tr := conntrack.NewTracker(conntrack.Config{Capacity: bm.capacity, Timeouts: conntrack.DefaultTimeouts(), Seed: 3})
			defer tr.Table.Free()
			tr.SetNow(1e9)
			for i := range min(bm.capacity, n) {
				tr.Track(&ps[i], 0)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// Distinct connections: vary the ports of the replayed SYNs.
				p := &ps[i%n]
				p.DstPort = uint16(80 + i/n)
				tr.Track(p, 0)
				i++
			}
			b.ReportMetric(float64(tr.Stats.EarlyDrops)/float64(i), "early_drops/op")
			b.ReportMetric(float64(tr.Table.Stats.Kicks)/float64(i), "kicks/op")
		})
	}
}
