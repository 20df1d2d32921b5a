package dataplane_test

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/packet/header"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// tracedPipeline is newPipeline with a trace attached by set.
func tracedPipeline(t *testing.T, rules string, set *dataplane.TraceSet) (*dataplane.Pipeline, *filter.Active, *atomic.Pointer[dataplane.TraceSet], *dataplane.TraceRing) {
	t.Helper()
	var sets atomic.Pointer[dataplane.TraceSet]
	sets.Store(set)
	r := dataplane.NewTraceRing()
	r.Listen(true)
	ports := []dataplane.PortInfo{{Zone: 0, Out: 1, Hook: filter.HookInput}, {Zone: 0, Out: 0, Hook: filter.HookOutput}}
	pl, f := buildPipeline(t, rules, dataplane.Options{PassNonIP: true, Ports: ports, Trace: &sets, TraceRing: r}, 4096)
	return pl, f, &sets, r
}

// A trace records, for each packet its filter selects, the rules it
// matched and the one that decided (or the policy: FORWARD's ACCEPT
// policy, then INPUT's or OUTPUT's on a link with an inside), its state
// before and
// after, and whether the verdict came from the cache; other packets make
// no record.
func TestTraceRecords(t *testing.T) {
	rules := tutorialRules + "-I INPUT 1 -p udp -j LOG --log-prefix x\n"
	set := &dataplane.TraceSet{Used: 1}
	set.Filters[0] = dataplane.TraceFilter{Proto: header.ProtoUDP, Dst: netip.MustParsePrefix("198.18.0.0/15"), In: dataplane.AnyPort}
	pl, f, _, ring := tracedPipeline(t, rules, set)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	m1, m2 := pcapgen.ClientMAC, pcapgen.ServerMAC
	frames := []struct {
		in    uint16
		frame []byte
	}{
		{0, pcapgen.UDP4(m1, m2, c, s, 5000, 9, 4)},     // NEW, LOG then accepted
		{1, pcapgen.UDP4(m2, m1, s, c, 9, 5000, 4)},     // ESTABLISHED reply
		{0, pcapgen.UDP4(m1, m2, c, s, 5000, 10, 4)},    // NEW to a closed port: policy
		{0, pcapgen.TCP4(c, s, 4000, 22, "S", 1, 0, 0)}, // not selected: TCP
	}
	var b dataplane.Burst
	for i, fr := range frames {
		b.N = 1
		b.Decode(0, fr.frame, 0)
		pl.Process(&b, fr.in, int64(time.Second)+int64(i))
	}
	var recs []dataplane.TraceRecord
	ring.Drain(func(r *dataplane.TraceRecord) { recs = append(recs, *r) })
	if len(recs) != 3 {
		t.Fatalf("%d records; want 3 (the UDP packets)", len(recs))
	}
	path := func(r *dataplane.TraceRecord) string {
		var s []string
		for _, st := range r.Path.Steps[:r.Path.N] {
			s = append(s, f.DecisionName(f.StepDecision(st)))
		}
		return strings.Join(s, " ")
	}
	for i, want := range []struct {
		state         conntrack.State
		existed       bool
		verdict       filter.Verdict
		reason        filter.DropReason
		decision, via string
	}{
		{conntrack.New, false, filter.Accept, filter.DropNone, "INPUT#3", "FORWARD policy INPUT#1 INPUT#3"},
		{conntrack.Established, true, filter.Accept, filter.DropNone, "OUTPUT#1", "FORWARD policy OUTPUT#1"},
		{conntrack.New, false, filter.Drop, filter.DropRule, "INPUT policy", "FORWARD policy INPUT#1 INPUT policy"},
	} {
		r := &recs[i]
		if r.State != want.state || r.Existed != want.existed || r.Verdict != want.verdict || r.Reason != want.reason ||
			f.DecisionName(r.Decision) != want.decision || path(r) != want.via || r.Cached || r.Mask != 1 {
			t.Errorf("record %d: %v existed %v %v/%v by %s via %q cached %v mask %d; want %v %v %v/%v by %s via %q",
				i, r.State, r.Existed, r.Verdict, r.Reason, f.DecisionName(r.Decision), path(r), r.Cached, r.Mask,
				want.state, want.existed, want.verdict, want.reason, want.decision, want.via)
		}
	}
	// The reply direction's second packet is judged from the cache: the
	// record says so and has no path.
	b.N = 1
	b.Decode(0, frames[1].frame, 0)
	pl.Process(&b, 1, int64(2*time.Second))
	recs = recs[:0]
	ring.Drain(func(r *dataplane.TraceRecord) { recs = append(recs, *r) })
	if len(recs) != 1 || !recs[0].Cached || recs[0].Path.N != 0 || f.DecisionName(recs[0].Decision) != "OUTPUT#1" {
		t.Fatalf("cached reply: %+v", recs)
	}
}

// A TCP connection's record shows its TCP state before and after.
func TestTraceTCPStates(t *testing.T) {
	set := &dataplane.TraceSet{Used: 1 << 3}
	set.Filters[3] = dataplane.TraceFilter{DstPort: 22, In: dataplane.AnyPort}
	pl, _, _, ring := tracedPipeline(t, "-A INPUT -p tcp --dport 22 -m state --state NEW -j ACCEPT\n-A OUTPUT -j ACCEPT\n", set)
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	var b dataplane.Burst
	b.N = 1
	b.Decode(0, pcapgen.TCP4(c, s, 4000, 22, "S", 1, 0, 0), 0)
	pl.Process(&b, 0, int64(time.Second))
	var recs []dataplane.TraceRecord
	ring.Drain(func(r *dataplane.TraceRecord) { recs = append(recs, *r) })
	if len(recs) != 1 || recs[0].Existed || recs[0].TCPAfter != tcpstate.SynSent || recs[0].Mask != 1<<3 {
		t.Fatalf("SYN: %+v", recs)
	}
}

// With no trace attached, or one that selects nothing, judging allocates
// nothing and records nothing.
func TestTraceOffAllocs(t *testing.T) {
	pl, _, sets, ring := tracedPipeline(t, tutorialRules, nil)
	var b dataplane.Burst
	b.N = 1
	b.Decode(0, pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, pcapgen.ClientIP(1), pcapgen.ServerIP(1), 5000, 9, 4), 0)
	for _, set := range []*dataplane.TraceSet{nil, {Used: 1, Filters: [8]dataplane.TraceFilter{{Proto: header.ProtoTCP, In: dataplane.AnyPort}}}} {
		sets.Store(set)
		if n := testing.AllocsPerRun(100, func() { pl.Process(&b, 0, int64(time.Second)) }); n != 0 {
			t.Errorf("Process allocates %v with trace set %v", n, set)
		}
	}
	if n := ring.Drain(func(*dataplane.TraceRecord) {}); n != 0 {
		t.Errorf("%d records with no trace selecting the packets", n)
	}
}
