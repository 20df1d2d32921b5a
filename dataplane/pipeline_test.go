package dataplane_test

import (
	"testing"

	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

func fillBurst(b *dataplane.Burst, frames [][]byte) {
	b.N = len(frames)
	for i, f := range frames {
		b.Decode(i, f)
	}
}

func TestPipelineVerdicts(t *testing.T) {
	udp := pcapgen.UDPFlows(1, false)[0]
	arp := append([]byte(nil), udp[:42]...)
	arp[12], arp[13] = 0x08, 0x06
	short := udp[:20]
	for _, tt := range []struct {
		name      string
		passNonIP bool
		frame     []byte
		verdict   filter.Verdict
		reason    filter.DropReason
	}{
		{"ip_accepted", false, udp, filter.Accept, filter.DropNone},
		{"arp_passed", true, arp, filter.Accept, filter.DropNone},
		{"arp_dropped", false, arp, filter.Drop, filter.DropNonIP},
		{"malformed", true, short, filter.Drop, filter.DropBadIPv4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := new(dataplane.Counters)
			pl := dataplane.NewPipeline(dataplane.Options{PassNonIP: tt.passNonIP}, c)
			var b dataplane.Burst
			fillBurst(&b, [][]byte{tt.frame})
			pl.Process(&b, 0, 0)
			if b.Verdict[0] != tt.verdict || b.Reason[0] != tt.reason {
				t.Errorf("got %v/%v; want %v/%v", b.Verdict[0], b.Reason[0], tt.verdict, tt.reason)
			}
			pl.Publish()
			s := c.Snapshot()
			if tt.verdict == filter.Accept && s.Accepted != 1 || tt.verdict == filter.Drop && s.Drops[tt.reason] != 1 {
				t.Errorf("counters not updated: %+v", s)
			}
		})
	}
}

// TestProcessNoAllocs proves the per-burst path (decode + verdicts +
// counter publication) allocates nothing.
func TestProcessNoAllocs(t *testing.T) {
	frames := pcapgen.UDPFlows(dataplane.BurstSize, true)[:dataplane.BurstSize]
	pl := dataplane.NewPipeline(dataplane.Options{PassNonIP: true}, new(dataplane.Counters))
	var b dataplane.Burst
	if n := testing.AllocsPerRun(1000, func() {
		fillBurst(&b, frames)
		pl.Process(&b, 0, 0)
		pl.Publish()
	}); n != 0 {
		t.Errorf("a burst allocates %v times; want 0", n)
	}
}

func BenchmarkPipeline(b *testing.B) {
	frames := pcapgen.UDPFlows(dataplane.BurstSize, false)
	pl := dataplane.NewPipeline(dataplane.Options{PassNonIP: true}, new(dataplane.Counters))
	var burst dataplane.Burst
	b.ReportAllocs()
	for b.Loop() {
		fillBurst(&burst, frames)
		pl.Process(&burst, 0, 0)
	}
	if burst.Verdict[0] != filter.Accept {
		b.Fatal(burst.Verdict[0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*dataplane.BurstSize), "ns/pkt")
}
