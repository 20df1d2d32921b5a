package dataplane_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// newPipeline returns a pipeline on ports 0 (outside) and 1 (inside) of one
// link, with the rules in iptables syntax.
func newPipeline(t testing.TB, passNonIP bool, ruleText string) *dataplane.Pipeline {
	t.Helper()
	ports := []dataplane.PortInfo{
		{Zone: 0, Out: 1, Hook: filter.HookInput},
		{Zone: 0, Out: 0, Hook: filter.HookOutput},
	}
	pl, _ := buildPipeline(t, ruleText, dataplane.Options{PassNonIP: passNonIP, Ports: ports}, 4096)
	return pl
}

// buildPipeline compiles rules for one worker, with ports named "outside"
// (id 0) and "inside" (id 1), and returns a pipeline with opts and a
// tracker of the given capacity, and the filter.
func buildPipeline(t testing.TB, ruleText string, opts dataplane.Options, capacity int) (*dataplane.Pipeline, *filter.Active) {
	t.Helper()
	rs, err := rules.ParseIptables("test", ruleText)
	if err != nil {
		t.Fatal(err)
	}
	c, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{"outside": 0, "inside": 1}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := filter.Install(c, 1, nil)
	var p atomic.Pointer[filter.Active]
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

// corrupt flips a bit of a fragment's last payload byte (its IPv4 header
// stays right).
func corrupt(f []byte) []byte {
	f[len(f)-1] ^= 0x10
	return f
}

// heldFrames plays the worker's part for held fragments: which frame (by
// number) each held slot keeps. It fails the test when a slot is held
// twice or one that holds nothing is released.
type heldFrames struct {
	t    testing.TB
	slot map[uint16]int
}

func newHeldFrames(t testing.TB) *heldFrames { return &heldFrames{t: t, slot: map[uint16]int{}} }

// fateFunc receives a frame's fate: sent, or dropped for reason.
type fateFunc func(frame int, accept bool, reason filter.DropReason)

// burst takes burst b's results after Process (its packet k is frame
// first+k): it keeps the held frames, and gives fate the others and the
// frames released.
func (h *heldFrames) burst(pl *dataplane.Pipeline, b *dataplane.Burst, first int, fate fateFunc) {
	for k := 0; k < b.N; k++ {
		s := b.Held[k]
		if s == 0 {
			fate(first+k, b.Verdict[k] == filter.Accept, b.Reason[k])
			continue
		}
		if f, dup := h.slot[s-1]; dup {
			h.t.Fatalf("frame %d held in slot %d, which holds frame %d", first+k, s-1, f)
		}
		h.slot[s-1] = first + k
	}
	h.drain(pl, fate)
}

// drain gives fate the frames the last Process, Idle or FlushFragments
// released.
func (h *heldFrames) drain(pl *dataplane.Pipeline, fate fateFunc) {
	for _, r := range pl.Released() {
		f, ok := h.slot[r.Slot]
		if !ok {
			h.t.Fatalf("released slot %d, which holds nothing", r.Slot)
		}
		delete(h.slot, r.Slot)
		fate(f, r.Accept, r.Reason)
	}
}

// fragRig sends frames one per burst and lists the releases as +name
// (sent) or -name (freed).
type fragRig struct {
	pl    *dataplane.Pipeline
	held  *heldFrames
	names []string
}

func newFragRig(t *testing.T, pl *dataplane.Pipeline) *fragRig {
	return &fragRig{pl: pl, held: newHeldFrames(t)}
}

// send processes one frame alone in a burst at now and returns its fate
// ("held", or verdict/reason) and the releases.
func (r *fragRig) send(name string, frame []byte, now int64) (fate, rel string) {
	var b dataplane.Burst
	b.N = 1
	b.Decode(0, frame, 0)
	r.pl.Process(&b, 0, now)
	n := len(r.names)
	r.names = append(r.names, name)
	fate = "held"
	var out []string
	r.held.burst(r.pl, &b, n, func(f int, accept bool, _ filter.DropReason) {
		if f == n {
			fate = b.Verdict[0].String() + "/" + b.Reason[0].String()
			return
		}
		out = append(out, map[bool]string{true: "+", false: "-"}[accept]+r.names[f])
	})
	return fate, strings.Join(out, " ")
}

// releases lists what the last Idle or FlushFragments released.
func (r *fragRig) releases() string {
	var out []string
	r.held.drain(r.pl, func(f int, accept bool, _ filter.DropReason) {
		out = append(out, map[bool]string{true: "+", false: "-"}[accept]+r.names[f])
	})
	return strings.Join(out, " ")
}

// TestFragmentsHeldUntilComplete: a datagram's fragments are held until it
// is complete, judged once, and all released by its verdict, as netfilter
// judges the datagram nf_defrag reassembled; duplicates, overlaps and
// fragments of finished datagrams get the kernel's treatment.
func TestFragmentsHeldUntilComplete(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	r := newFragRig(t, pl)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	allowed := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 9, 400)
	refused := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 10, 400)
	for _, st := range []struct {
		name, want, rel string
		frame           []byte
	}{
		{"a1", "held", "", fragment(allowed, 77, 0, 104, true)},
		{"a2", "held", "", fragment(allowed, 77, 104, 104, true)},
		{"a3 completes a", "ACCEPT/none", "+a1 +a2", fragment(allowed, 77, 208, 200, false)},
		{"b3 before its first", "held", "", fragment(allowed, 78, 104, 304, false)},
		{"b1 completes b", "ACCEPT/none", "+b3 before its first", fragment(allowed, 78, 0, 104, true)},
		{"c1 of a refused datagram", "held", "", fragment(refused, 79, 0, 104, true)},
		{"c2 completes c", "DROP/rule", "-c1 of a refused datagram", fragment(refused, 79, 104, 304, false)},
		{"d1", "held", "", fragment(allowed, 80, 0, 104, true)},
		{"d1 again", "DROP/fragment_duplicate", "", fragment(allowed, 80, 0, 104, true)},
		{"d2", "held", "", fragment(allowed, 80, 104, 104, true)},
		{"d2 again", "DROP/fragment_duplicate", "", fragment(allowed, 80, 104, 104, true)},
		{"d4, leaving a hole", "held", "", fragment(allowed, 80, 304, 104, false)},
		{"a last fragment moving the end", "DROP/fragment_overlap", "", fragment(allowed, 80, 208, 96, false)},
		{"an overlap", "DROP/fragment_overlap", "-d1 -d2 -d4, leaving a hole", fragment(allowed, 80, 160, 96, true)},
		{"the hole, after the overlap", "DROP/fragment", "", fragment(allowed, 80, 208, 96, true)},
		{"e1", "held", "", fragment(allowed, 81, 0, 104, true)},
		{"e2 completes e", "ACCEPT/none", "+e1", fragment(allowed, 81, 104, 304, false)},
		{"e2 again, after completion", "DROP/fragment", "", fragment(allowed, 81, 104, 304, false)},
		{"g1", "held", "", fragment(allowed, 82, 0, 104, true)},
		{"g2 completes g, its UDP checksum wrong", "DROP/bad_checksum", "-g1", corrupt(fragment(allowed, 82, 104, 304, false))},
		{"e1 again: the id reused", "held", "", fragment(allowed, 81, 0, 104, true)},
	} {
		fate, rel := r.send(st.name, st.frame, int64(time.Second))
		if fate != st.want || rel != st.rel {
			t.Errorf("%s: %s, releasing %q; want %s, releasing %q", st.name, fate, rel, st.want, st.rel)
		}
	}
	// The datagram never completed: its fragment goes after 30 s.
	rel := ""
	for k := 0; k < dataplane.FragHeld/64; k++ {
		pl.Idle(int64(31*time.Second) + 1)
		rel += r.releases()
	}
	if rel != "-e1 again: the id reused" {
		t.Errorf("after 30 s, released %q; want the last datagram's first fragment", rel)
	}
	pl.Publish()
	got := pl.Counters().Snapshot()
	if got.Drops[filter.DropFragmentTimeout] != 1 || got.FragmentsHeld != 0 || got.Accepted != 7 {
		t.Errorf("timeouts %d, held %d, accepted %d; want 1, 0, 7", got.Drops[filter.DropFragmentTimeout], got.FragmentsHeld, got.Accepted)
	}
}

// TestFragmentMemory: a datagram holds at most 64 fragments, a worker 256;
// past either, the datagram that found no room is dropped whole, and the
// others keep theirs. Shutdown frees what is held.
func TestFragmentMemory(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	r := newFragRig(t, pl)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	big := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 9, 1000)
	now := int64(time.Second)
	for k := 0; k < 64; k++ {
		if fate, _ := r.send(fmt.Sprint("f", k), fragment(big, 1, 8*k, 8, true), now); fate != "held" {
			t.Fatalf("fragment %d: %s; want held", k, fate)
		}
	}
	fate, rel := r.send("f64", fragment(big, 1, 8*64, 8, true), now)
	if fate != "DROP/fragment_memory" || strings.Count(rel, "-") != 64 {
		t.Fatalf("the 65th fragment: %s, releasing %q; want the datagram dropped", fate, rel)
	}
	// 256 held over five datagrams: the 257th fragment finds no room.
	held := 0
	for id := uint16(2); held < dataplane.FragHeld; id++ {
		for k := 0; k < 60 && held < dataplane.FragHeld; k++ {
			if fate, _ := r.send(fmt.Sprint(id, "/", k), fragment(big, id, 8*k, 8, true), now); fate != "held" {
				t.Fatalf("datagram %d fragment %d: %s; want held", id, k, fate)
			}
			held++
		}
	}
	fate, rel = r.send("one too many", fragment(big, 100, 0, 8, true), now)
	if fate != "DROP/fragment_memory" || rel != "" {
		t.Errorf("fragment 257: %s, releasing %q; want dropped alone (its datagram held nothing)", fate, rel)
	}
	pl.Publish()
	if h := pl.Counters().Snapshot().FragmentsHeld; h != dataplane.FragHeld {
		t.Errorf("%d held; want %d", h, dataplane.FragHeld)
	}
	pl.FlushFragments()
	if rel := r.releases(); strings.Count(rel, "-") != dataplane.FragHeld || strings.Contains(rel, "+") {
		t.Errorf("shutdown released %d fragments; want all %d, freed", strings.Count(rel, "-"), dataplane.FragHeld)
	}
	if len(r.held.slot) != 0 {
		t.Errorf("%d fragments still held after shutdown", len(r.held.slot))
	}
}

// TestFragmentedDatagramCounted: a reassembled datagram is counted once,
// with its whole length, against the rule that accepted it (as iptables -v
// counts the datagram nf_defrag built).
func TestFragmentedDatagramCounted(t *testing.T) {
	pl, f := buildPipeline(t, "-A FORWARD -p udp --dport 9 -j ACCEPT\n-A FORWARD -j DROP\n",
		dataplane.Options{Ports: []dataplane.PortInfo{{Out: 1}, {Out: 0}}}, 64)
	r := newFragRig(t, pl)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	dgram := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 5000, 9, 400)
	r.send("2", fragment(dgram, 5, 208, 200, false), int64(time.Second))
	if fate, rel := r.send("1", fragment(dgram, 5, 0, 208, true), int64(time.Second)); fate != "ACCEPT/none" || rel != "+2" {
		t.Fatalf("%s %q", fate, rel)
	}
	if pk, by := f.State.Totals(0); pk != 1 || by != uint64(len(dgram)-14) {
		t.Errorf("the rule counted %d packets, %d bytes; want 1, %d", pk, by, len(dgram)-14)
	}
}

// TestHostileCatalogue runs the hostile capture the net_pcap suite replays
// through a pipeline: every hostile frame is dropped with its reason (a
// held fragment when its datagram is decided), every allowed one passes,
// and nothing else is counted.
func TestHostileCatalogue(t *testing.T) {
	// The catalogue's rules name the e2e test's ports a and b.
	rules := strings.ReplaceAll(pcapgen.HostileRules, "-i a ", "-i outside ")
	pl, _ := buildPipeline(t, rules, dataplane.Options{Ports: []dataplane.PortInfo{{Out: 1}, {Out: 0}}}, 4096)
	want := map[string]uint64{}
	fates := map[string]string{}
	held := newHeldFrames(t)
	cat := pcapgen.Hostile()
	for i, h := range cat {
		var b dataplane.Burst
		b.N = 1
		b.Decode(0, h.Frame, 0)
		pl.Process(&b, 0, int64(time.Second))
		held.burst(pl, &b, i, func(f int, accept bool, r filter.DropReason) {
			fates[cat[f].Name] = ""
			if !accept {
				fates[cat[f].Name] = r.String()
			}
		})
	}
	for _, h := range cat {
		if got, ok := fates[h.Name]; !ok {
			t.Errorf("%s: still held", h.Name)
		} else if got != h.Reason {
			t.Errorf("%s: dropped for %q; want %q", h.Name, got, h.Reason)
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
		if pk, _ := f.State.Totals(uint32(id)); pk != 3 {
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

// TestFragmentsNeverPartial sends 2,000 datagrams as random fragment
// layouts (shuffled, duplicated, overlapping, incomplete), interleaved in
// bursts of 1 to 32 frames with time passing, and checks what the kernel
// guarantees: every frame is decided exactly once, and a datagram's
// forwarded fragments are either none or cover it exactly (never a part,
// never a byte twice); the counters balance.
func TestFragmentsNeverPartial(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	rng := rand.New(rand.NewPCG(7, 12))
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	var frames []fragPiece
	sizes := map[int]int{}
	var active [][]fragPiece
	for d := 0; d < 2000 || len(active) > 0; {
		for len(active) < 4 && d < 2000 {
			size := 8 * (2 + rng.IntN(300))
			full := pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, uint16(1000+d%50), 9, size-8)
			sizes[d] = size
			active = append(active, randomLayout(rng, d, full, size))
			d++
		}
		k := rng.IntN(len(active))
		frames = append(frames, active[k][0])
		if active[k] = active[k][1:]; len(active[k]) == 0 {
			active = append(active[:k], active[k+1:]...)
		}
	}
	fate := make([]string, len(frames)) // "" undecided, "+" sent, "-" dropped
	held := newHeldFrames(t)
	decide := func(i int, accept bool, _ filter.DropReason) {
		f := map[bool]string{true: "+", false: "-"}[accept]
		if fate[i] != "" {
			t.Fatalf("frame %d decided twice (%s, then %s)", i, fate[i], f)
		}
		fate[i] = f
	}
	now := int64(time.Second)
	var b dataplane.Burst
	for i := 0; i < len(frames); {
		b.N = min(1+rng.IntN(dataplane.BurstSize), len(frames)-i)
		for k := 0; k < b.N; k++ {
			b.Decode(k, frames[i+k].frame, 0)
		}
		pl.Process(&b, 0, now)
		held.burst(pl, &b, i, decide)
		i += b.N
		now += int64(time.Millisecond)
		if rng.IntN(40) == 0 {
			now += 31 * int64(time.Second)
			for k := 0; k < dataplane.FragHeld/64; k++ {
				pl.Idle(now)
				held.drain(pl, decide)
			}
		}
	}
	pl.FlushFragments()
	held.drain(pl, decide)
	covered := map[int][]bool{}
	for i, f := range frames {
		if fate[i] == "" {
			t.Fatalf("frame %d never decided", i)
		}
		if fate[i] != "+" {
			continue
		}
		cv := covered[f.dgram]
		if cv == nil {
			cv = make([]bool, sizes[f.dgram])
			covered[f.dgram] = cv
		}
		for b := f.off; b < f.off+f.n; b++ {
			if cv[b] {
				t.Fatalf("datagram %d: byte %d forwarded twice", f.dgram, b)
			}
			cv[b] = true
		}
	}
	whole := 0
	for d, cv := range covered {
		for b, ok := range cv {
			if !ok {
				t.Fatalf("datagram %d forwarded in part: byte %d missing", d, b)
			}
		}
		whole++
	}
	pl.Publish()
	st := pl.Counters().Snapshot()
	if st.Accepted+st.TotalDrops() != uint64(len(frames)) || st.FragmentsHeld != 0 {
		t.Errorf("accepted %d + dropped %d != %d frames (held %d)", st.Accepted, st.TotalDrops(), len(frames), st.FragmentsHeld)
	}
	if whole < 1400 {
		t.Errorf("only %d of 2000 datagrams forwarded: the layouts are too hostile to test the common case", whole)
	}
	t.Logf("%d frames, %d datagrams forwarded whole; drops %v", len(frames), whole, dropSummary(&st))
}

// fragPiece is bytes [off, off+n) of datagram dgram, as a frame.
type fragPiece struct {
	dgram, off, n int
	frame         []byte
}

// randomLayout cuts datagram d (frame full, size bytes of IP payload) into
// fragments: in order or shuffled, sometimes with a duplicate, an overlap
// or a missing piece.
func randomLayout(rng *rand.Rand, d int, full []byte, size int) []fragPiece {
	type piece = fragPiece
	var cuts []int
	for off := 0; off < size; {
		n := min(8*(1+rng.IntN(40)), size-off)
		if off == 0 && n == size {
			n = size / 2 / 8 * 8 // at least two fragments
		}
		cuts = append(cuts, off, n)
		off += n
	}
	var out []piece
	for k := 0; k < len(cuts); k += 2 {
		out = append(out, piece{d, cuts[k], cuts[k+1], nil})
	}
	switch rng.IntN(10) {
	case 0:
		out = append(out, out[rng.IntN(len(out))]) // a duplicate
	case 1:
		if p := out[rng.IntN(len(out))]; p.off+p.n+8 <= size {
			out = append(out, piece{d, p.off, p.n + 8, nil}) // an overlap
		}
	case 2:
		k := rng.IntN(len(out))
		out = append(out[:k], out[k+1:]...) // never completes
	}
	if rng.IntN(2) == 0 {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	for k := range out {
		out[k].frame = fragment(full, uint16(d+1), out[k].off, out[k].n, out[k].off+out[k].n < size)
	}
	return out
}

// dropSummary lists the non-zero drop counters.
func dropSummary(s *dataplane.Snapshot) string {
	var out []string
	for r, n := range s.Drops {
		if n != 0 {
			out = append(out, fmt.Sprintf("%s=%d", filter.DropReason(r), n))
		}
	}
	return strings.Join(out, " ")
}

// The sweep is paced by the clock: bursts a millisecond apart examine the
// whole table within a second, so connections past their timeout go
// within about a second of it, however many bursts come.
func TestReapPaced(t *testing.T) {
	pl := newPipeline(t, true, tutorialRules)
	frames := pcapgen.UDPFlows(100, false)
	var b dataplane.Burst
	for i, f := range frames {
		b.N = 1
		b.Decode(0, f, 0)
		pl.Process(&b, 0, int64(time.Second)+int64(i))
	}
	if n := pl.Tracker.Table.Len(); n != 100 {
		t.Fatalf("%d connections; want 100", n)
	}
	other := pcapgen.UDPFlows(1, false)[0] // one flow kept busy
	for now := int64(32 * time.Second); now < int64(33*time.Second)+int64(100*time.Millisecond); now += int64(time.Millisecond) {
		b.N = 1
		b.Decode(0, other, 0)
		pl.Process(&b, 0, now)
	}
	if n := pl.Tracker.Table.Len(); n != 1 {
		t.Errorf("%d connections 1.1 s after 99 of them expired; want the 1 kept busy", n)
	}
}
