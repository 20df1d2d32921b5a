package dataplane_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// newPipeline returns a pipeline on ports 0 (outside) and 1 (inside) of one
// link, with the rules in iptables syntax.
func newPipeline(t testing.TB, passNonIP bool, rules string) *dataplane.Pipeline {
	t.Helper()
	ports := []dataplane.PortInfo{
		{Zone: 0, Out: 1, Hook: filter.HookInput},
		{Zone: 0, Out: 0, Hook: filter.HookOutput},
	}
	pl, _ := buildPipeline(t, rules, dataplane.Options{PassNonIP: passNonIP, Ports: ports}, 4096)
	return pl
}

// buildPipeline compiles rules for one worker, with ports named "outside"
// (id 0) and "inside" (id 1), and returns a pipeline with opts and a
// tracker of the given capacity, and the filter.
func buildPipeline(t testing.TB, rules string, opts dataplane.Options, capacity int) (*dataplane.Pipeline, *filter.Filter) {
	t.Helper()
	rs, err := filter.ParseIptables("test", rules)
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{"outside": 0, "inside": 1}, Workers: 1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var p atomic.Pointer[filter.Filter]
	p.Store(f)
	tr := conntrack.NewTracker(conntrack.Config{Capacity: capacity, Timeouts: conntrack.DefaultTimeouts(), Seed: 1, FTP: conntrack.DefaultFTP()})
	return dataplane.NewPipeline(opts, tr, &p, new(dataplane.Counters)), f
}

func fillBurst(b *dataplane.Burst, frames [][]byte) {
	b.N = len(frames)
	for i, f := range frames {
		b.Decode(i, f, 0)
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
			pl := newPipeline(t, tt.passNonIP, "")
			c := pl.Counters()
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
	pl := newPipeline(t, true, tutorialRules)
	var b dataplane.Burst
	if n := testing.AllocsPerRun(1000, func() {
		fillBurst(&b, frames)
		pl.Process(&b, 0, 0)
		pl.Publish()
	}); n != 0 {
		t.Errorf("a burst allocates %v times; want 0", n)
	}
}

// TestFragmentsNoAllocs: the fragment path (first, duplicate, later,
// overlapping fragments) allocates nothing either.
func TestFragmentsNoAllocs(t *testing.T) {
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	allowed := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 9, 400)
	var frames [][]byte
	for id := uint16(1); id <= 6; id++ {
		frames = append(frames, fragment(allowed, id, 0, 104, true), fragment(allowed, id, 0, 104, true),
			fragment(allowed, id, 104, 104, true), fragment(allowed, id, 160, 96, true), fragment(allowed, id, 208, 200, false))
	}
	pl := newPipeline(t, true, tutorialRules)
	var b dataplane.Burst
	if n := testing.AllocsPerRun(200, func() {
		fillBurst(&b, frames)
		pl.Process(&b, 0, 0)
	}); n != 0 {
		t.Errorf("a burst of fragments allocates %v times; want 0", n)
	}
}

func BenchmarkPipeline(b *testing.B) {
	frames := pcapgen.UDPFlows(dataplane.BurstSize, false)
	pl := newPipeline(b, true, tutorialRules)
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

// tutorialRules: the inside (port 1) may open connections out; the outside
// may open only UDP port 9 in; replies are ESTABLISHED both ways.
const tutorialRules = `
-P INPUT DROP
-P OUTPUT DROP
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p udp --dport 9 -m state --state NEW -j ACCEPT
-A OUTPUT -m state --state NEW,ESTABLISHED,RELATED -j ACCEPT
`

// TestStatefulVerdicts: a flow opened from outside to an allowed port gets
// its replies through; a flow opened from outside to another port is
// dropped, and so is an unsolicited "reply".
func TestStatefulVerdicts(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	m1, m2 := pcapgen.ClientMAC, pcapgen.ServerMAC
	steps := []struct {
		name    string
		in      uint16
		frame   []byte
		verdict filter.Verdict
		state   conntrack.State
	}{
		{"outside opens udp/9", 0, pcapgen.UDP4(m1, m2, c, s, 5000, 9, 4), filter.Accept, conntrack.New},
		{"inside replies", 1, pcapgen.UDP4(m2, m1, s, c, 9, 5000, 4), filter.Accept, conntrack.Established},
		{"outside again", 0, pcapgen.UDP4(m1, m2, c, s, 5000, 9, 4), filter.Accept, conntrack.Established},
		{"outside again, from the cache", 0, pcapgen.UDP4(m1, m2, c, s, 5000, 9, 4), filter.Accept, conntrack.Established},
		{"outside opens udp/10", 0, pcapgen.UDP4(m1, m2, c, s, 5000, 10, 4), filter.Drop, conntrack.New},
		// The dropped packet's connection was never confirmed: a "reply" is
		// a new flow of its own (allowed out by OUTPUT NEW), not ESTABLISHED.
		{"inside 'replies' to it", 1, pcapgen.UDP4(m2, m1, s, c, 10, 5000, 4), filter.Accept, conntrack.New},
	}
	var b dataplane.Burst
	now := int64(time.Second)
	for _, st := range steps {
		b.N = 1
		b.Decode(0, st.frame, 0)
		pl.Process(&b, st.in, now)
		if b.Verdict[0] != st.verdict || b.State[0] != st.state {
			t.Errorf("%s: %v/%v; want %v/%v", st.name, b.Verdict[0], b.State[0], st.verdict, st.state)
		}
	}
	pl.Publish()
	if s := pl.Counters().Snapshot(); s.Drops[filter.DropRule] != 1 || s.CacheHits != 1 {
		t.Errorf("counters: rule drops %d (want 1), cache hits %d (want 1)", s.Drops[filter.DropRule], s.CacheHits)
	}
}

// TestDroppedNewLeavesNoEntry: a flood of NEW packets the rules drop does
// not fill the connection table.
func TestDroppedNewLeavesNoEntry(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	var b dataplane.Burst
	for i := 0; i < 1000; i++ {
		b.N = 1
		b.Decode(0, pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, pcapgen.ClientIP(i), pcapgen.ServerIP(1), uint16(1000+i), 10, 4), 0)
		pl.Process(&b, 0, int64(time.Second))
		if b.Verdict[0] != filter.Drop {
			t.Fatalf("packet %d: %v; want DROP", i, b.Verdict[0])
		}
	}
	if n := pl.Tracker.Table.Len(); n != 0 {
		t.Errorf("%d entries after 1000 dropped NEW packets; want 0", n)
	}
}

// BenchmarkEstablished compares ESTABLISHED packets of allowed flows judged
// from their connection's decision cache with the same packets classified
// every time (a rule set that matches TCP flags is not cached for TCP; this
// benchmark uses UDP with a LOG rule on the path to defeat the cache).
func BenchmarkEstablished(b *testing.B) {
	flows := pcapgen.UDPFlows(dataplane.BurstSize/2, true)
	for _, bm := range []struct{ name, rules string }{
		{"cached", tutorialRules},
		{"classified", tutorialRules + "-I INPUT -p udp -j LOG\n"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			pl := newPipeline(b, true, bm.rules)
			var burst dataplane.Burst
			now := int64(time.Second)
			run := func() {
				burst.N = len(flows)
				for i, f := range flows {
					burst.Decode(i, f, 0)
				}
				pl.Process(&burst, 0, now)
			}
			run() // first pass: NEW, then replies
			run()
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
			pl.Publish()
			s := pl.Counters().Snapshot()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/pkt")
			b.ReportMetric(float64(s.CacheHits)/float64(s.CacheHits+s.Classified), "cached_ratio")
		})
	}
}

// BenchmarkFlows: UDP packets of n established flows, each followed by its
// reply, as in the perf runner's ct workload, through the tracking pipeline
// with a table of 2n connections. Each frame is first copied into one of
// 32 reused buffers, as a PMD copies into recycled mbufs. At 64 K flows the
// table is in cache; at 1 M it is not, and the difference is what the
// table's cache misses cost per packet after prefetching.
func BenchmarkFlows(b *testing.B) {
	for _, n := range []int{1 << 16, 1 << 20} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			frames := pcapgen.UDPFlows(n, true)
			ports := []dataplane.PortInfo{{Zone: 0, Out: 1, Hook: filter.HookInput}, {Zone: 0, Out: 0, Hook: filter.HookOutput}}
			pl, _ := buildPipeline(b, tutorialRules, dataplane.Options{Ports: ports}, 2*n)
			var burst dataplane.Burst
			var bufs [dataplane.BurstSize][64]byte
			pos := 0
			run := func() {
				burst.N = dataplane.BurstSize
				for i := range dataplane.BurstSize {
					burst.Decode(i, bufs[i][:copy(bufs[i][:], frames[pos])], 0)
					if pos++; pos == len(frames) {
						pos = 0
					}
				}
				pl.Process(&burst, 0, int64(time.Second))
			}
			for range 2 * len(frames) / dataplane.BurstSize {
				run() // every flow opened, then established
			}
			if got := pl.Tracker.Table.Len(); got != n {
				b.Fatalf("%d connections after the warm-up; want %d", got, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
			for i := range burst.N {
				if burst.Verdict[i] != filter.Accept || burst.State[i] != conntrack.Established {
					b.Fatalf("packet %d: %v/%v; want ACCEPT/ESTABLISHED", i, burst.Verdict[i], burst.State[i])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*dataplane.BurstSize), "ns/pkt")
		})
	}
}

// fragment turns a UDP/IPv4 frame into one fragment of datagram id: the
// bytes of its IP payload from off (a multiple of 8) of length n, with MF.
func fragment(frame []byte, id uint16, off, n int, more bool) []byte {
	payload := frame[34:]
	f := append(append([]byte(nil), frame[:34]...), payload[off:off+n]...)
	binary.BigEndian.PutUint16(f[14+2:], uint16(20+n))
	binary.BigEndian.PutUint16(f[14+4:], id)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(f[14+6:], fo)
	binary.BigEndian.PutUint16(f[14+10:], 0)
	binary.BigEndian.PutUint16(f[14+10:], header.Checksum(f[14:34], 0))
	return f
}

// TestFragmentsFollowTheirFirst: later fragments inherit the verdict of
// their datagram's first fragment; without one they are dropped.
func TestFragmentsFollowTheirFirst(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	allowed := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 9, 400)
	refused := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 10, 400)
	var b dataplane.Burst
	for _, st := range []struct {
		name   string
		frame  []byte
		want   filter.Verdict
		reason filter.DropReason
	}{
		{"first fragment of an allowed datagram", fragment(allowed, 77, 0, 104, true), filter.Accept, filter.DropNone},
		{"its later fragment", fragment(allowed, 77, 104, 104, true), filter.Accept, filter.DropNone},
		{"its last fragment", fragment(allowed, 77, 208, 200, false), filter.Accept, filter.DropNone},
		{"a later fragment with no first", fragment(allowed, 78, 104, 104, false), filter.Drop, filter.DropFragment},
		{"first fragment of a refused datagram", fragment(refused, 79, 0, 104, true), filter.Drop, filter.DropRule},
		{"its later fragment", fragment(refused, 79, 104, 104, false), filter.Drop, filter.DropRule},
		{"first fragment", fragment(allowed, 80, 0, 104, true), filter.Accept, filter.DropNone},
		{"the first fragment again", fragment(allowed, 80, 0, 104, true), filter.Drop, filter.DropFragmentDup},
		{"a second fragment", fragment(allowed, 80, 104, 104, true), filter.Accept, filter.DropNone},
		{"the second again", fragment(allowed, 80, 104, 104, true), filter.Drop, filter.DropFragmentDup},
		{"the last fragment, leaving a hole", fragment(allowed, 80, 304, 104, false), filter.Accept, filter.DropNone},
		{"a last fragment that would move the end", fragment(allowed, 80, 208, 96, false), filter.Drop, filter.DropFragmentOverlap},
		{"a fragment overlapping the second", fragment(allowed, 80, 160, 96, true), filter.Drop, filter.DropFragmentOverlap},
		{"the hole, after the overlap killed the datagram", fragment(allowed, 80, 208, 96, true), filter.Drop, filter.DropFragment},
		{"a new datagram", fragment(allowed, 81, 0, 104, true), filter.Accept, filter.DropNone},
		{"completed", fragment(allowed, 81, 104, 304, false), filter.Accept, filter.DropNone},
		{"a fragment after completion", fragment(allowed, 81, 104, 304, false), filter.Drop, filter.DropFragment},
		{"the id reused: a new datagram", fragment(allowed, 81, 0, 104, true), filter.Accept, filter.DropNone},
	} {
		b.N = 1
		b.Decode(0, st.frame, 0)
		pl.Process(&b, 0, int64(time.Second))
		if b.Verdict[0] != st.want || b.Reason[0] != st.reason {
			t.Errorf("%s: %v/%v; want %v/%v (%v)", st.name, b.Verdict[0], b.Reason[0], st.want, st.reason, &b.Parsed[0])
		}
	}
}

// TestHostileCatalogue runs the hostile capture the net_pcap suite replays
// through a pipeline: every hostile frame is dropped with its reason, every
// allowed one passes, and nothing else is counted.
func TestHostileCatalogue(t *testing.T) {
	// The catalogue's rules name the e2e test's ports a and b.
	rules := strings.ReplaceAll(pcapgen.HostileRules, "-i a ", "-i outside ")
	pl, _ := buildPipeline(t, rules, dataplane.Options{Ports: []dataplane.PortInfo{{Out: 1}, {Out: 0}}}, 4096)
	want := map[string]uint64{}
	for _, h := range pcapgen.Hostile() {
		var b dataplane.Burst
		b.N = 1
		b.Decode(0, h.Frame, 0)
		pl.Process(&b, 0, int64(time.Second))
		got := ""
		if b.Verdict[0] != filter.Accept {
			got = b.Reason[0].String()
		}
		if got != h.Reason {
			t.Errorf("%s: dropped for %q; want %q (%v)", h.Name, got, h.Reason, &b.Parsed[0])
		}
		if h.Reason != "" {
			want[h.Reason]++
		}
	}
	for r := filter.DropReason(0); r < filter.NumDropReasons; r++ {
		if pl.Stats.Drops[r] != want[r.String()] {
			t.Errorf("drops[%s] = %d; want %d", r, pl.Stats.Drops[r], want[r.String()])
		}
	}
}

// On a link with an inside, a packet a FORWARD rule accepts goes on to
// INPUT; both rules count it (as iptables -L -v would show), every time.
func TestForwardThenInputCounters(t *testing.T) {
	pl, f := buildPipeline(t, `-A FORWARD -p udp -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
-A INPUT -p udp -j ACCEPT
`, dataplane.Options{Ports: []dataplane.PortInfo{{Out: 1, Hook: filter.HookInput}, {Out: 0, Hook: filter.HookOutput}}}, 64)
	var b dataplane.Burst
	frame := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, pcapgen.ClientIP(1), pcapgen.ServerIP(1), 1000, 53, 4)
	for i := 0; i < 3; i++ {
		fillBurst(&b, [][]byte{frame})
		pl.Process(&b, 0, int64(time.Second))
		if b.Verdict[0] != filter.Accept {
			t.Fatalf("packet %d: %v", i, b.Verdict[0])
		}
	}
	for id := range f.Rules {
		if pk, _ := f.Totals(uint16(id)); pk != 3 {
			t.Errorf("%s counted %d packets; want 3", f.Rules[id].String(), pk)
		}
	}
}

// TestFragSeeds: the fragment table's hash is seeded per pipeline, so two
// pipelines (two workers, two processes) place the same datagrams in
// different slots, and nobody can pick fragments that collide; the hash
// does not allocate.
func TestFragSeeds(t *testing.T) {
	a, b := newPipeline(t, true, tutorialRules), newPipeline(t, true, tutorialRules)
	differ := 0
	for id := uint32(1); id <= 16; id++ {
		p := &packet.Parsed{Kind: packet.IPv4, Proto: 17, FragID: id, Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 18, 0, 2}}
		if a.FragSlot(p, 0) != b.FragSlot(p, 0) {
			differ++
		}
	}
	if differ == 0 {
		t.Errorf("two pipelines placed 16 datagrams in the same slots: the hash is not seeded")
	}
	p := &packet.Parsed{Kind: packet.IPv4, Proto: 17, FragID: 7}
	if n := testing.AllocsPerRun(100, func() { a.FragSlot(p, 0) }); n != 0 {
		t.Errorf("FragSlot allocates %v", n)
	}
}
