package dataplane

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/reject"
	"github.com/dpfw/dpfw/internal/nocopy"
	"github.com/dpfw/dpfw/internal/rate"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// NoDecision is Burst.Decision for a packet the rules did not decide.
const NoDecision = 0xffffffff

// Every decision id of a rule set the parser accepts fits in a connection
// entry's cache: this fails to compile if the two limits disagree.
var _ = [1]struct{}{}[filter.MaxDecisions/(conntrack.MaxDecision+1)]

// BurstSize is the most frames a burst holds (DPDK's rx burst size), as
// many as a conntrack.Batch stages.
const BurstSize = conntrack.BatchSize

// After each burst a worker examines as many connection entries for
// expiry as sweep the whole table once per reapSweep of its clock (at
// 11 Mpps, a 64 K-entry table takes one entry every few bursts instead of
// 8 every burst), at most reapPerBurst; after each empty poll round,
// reapPerIdle. Reap speeds up by itself when many entries expire, and a
// new connection that finds the table full takes an expired entry's place
// first (conntrack's early drop).
const (
	reapSweep    = int64(time.Second)
	reapPerBurst = 64
	reapPerIdle  = 64
	// fragsPerBurst is the fragment table's share.
	fragsPerBurst = 8
)

// PortInfo is what the pipeline knows about an input port.
type PortInfo struct {
	// Zone is the link the port belongs to; conntrack keeps links apart.
	Zone uint16
	// Out is the paired port's id.
	Out uint16
	// Hook is HookInput if traffic entering this port goes to the link's
	// inside, HookOutput if it leaves the inside, HookForward if the link
	// declares no inside. Every packet traverses FORWARD first.
	Hook filter.Hook
}

// Options are a pipeline's settings.
type Options struct {
	// PassNonIP forwards ARP and other non-IP frames between paired ports.
	PassNonIP bool
	// Ports is indexed by input port id.
	Ports []PortInfo
	// Worker is this pipeline's worker index (for per-worker rule counters).
	Worker int
	// Workers is the number of workers; with Steer, each connection has one
	// owner among them (PairHash of its address pair, modulo Workers), and
	// packets polled by another worker are handed to the owner.
	Workers int
	Steer   bool
	// SteerSeed keys the owner hash; every worker must use the same.
	SteerSeed uint64
	// RejectPerSecond limits REJECT answers per worker (0: never answer).
	RejectPerSecond int
	// Checksum says how checksums are validated.
	Checksum Checksum
	// Log receives LOG records (nil: LOG rules only count); LogPerSecond
	// limits them per worker.
	Log          chan<- LogRecord
	LogPerSecond int
	// Trace points to the attached traces (nil, or pointing to nil: none)
	// and TraceRing receives the traced packets' records (trace.go).
	Trace     *atomic.Pointer[TraceSet]
	TraceRing *TraceRing
	// Standby, when set and true, drops every frame (reason standby): an
	// HA backup forwards nothing until it is promoted.
	Standby *atomic.Bool
}

// Checksum is a checksum validation mode.
type Checksum uint8

// Checksum modes. As in netfilter (nf_conntrack_checksum), checksums are
// part of connection tracking: they are validated for the packets that are
// tracked (the rule set matches on state), and packets that fail are
// INVALID and dropped with reason bad_checksum before the rules, whatever
// they say. Without state rules dpfw forwards like a router, which leaves
// checksums to the endpoints.
const (
	// ChecksumFull uses the NIC's receive checksum offload where the port
	// has it and computes the rest in software (netfilter's default,
	// nf_conntrack_checksum=1).
	ChecksumFull Checksum = iota
	// ChecksumHardware trusts the NIC's verdicts only: packets it did not
	// check pass unchecked.
	ChecksumHardware
	// ChecksumOff validates nothing.
	ChecksumOff
)

// LogRecord is one packet matched by a LOG rule, for the control side to
// format. It holds no pointers into packet memory.
type LogRecord struct {
	Rule             uint32 // decision id of the LOG rule
	Generation       uint32
	In, Out          uint16
	State            conntrack.State
	Family, Proto    uint8
	TCPFlags         uint8
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Len              int
}

// Burst is one burst's frames and results, preallocated per worker.
type Burst struct {
	N       int
	Parsed  [BurstSize]packet.Parsed
	Verdict [BurstSize]filter.Verdict
	Reason  [BurstSize]filter.DropReason
	// State is each packet's conntrack state.
	State [BurstSize]conntrack.State
	// Owner is the worker a packet must be handed to, or -1 if this worker
	// handles it (set by Process when steering).
	Owner [BurstSize]int8
	// Answer is 1 + the reject.Kind to answer a rejected packet with, or 0.
	Answer [BurstSize]uint8
	// Csum holds the NIC's checksum verdicts (packet.CsumHint of the
	// mbuf's offload flags; 0: unknown), filled by the feeder.
	Csum [BurstSize]uint8
	// Decision is the filter decision id (rule or chain policy) that gave
	// packet i its verdict, or NoDecision (decided before the rules:
	// malformed, checksum, fragment handling, conntrack limits).
	Decision [BurstSize]uint32
	// Held is 1 + the held slot where the worker must keep frame i's
	// mbuf (a fragment of an incomplete datagram), or 0.
	Held [BurstSize]uint16
	// FromRing marks a burst that another worker steered here: it is not
	// steered again.
	FromRing bool
}

// Pipeline gives verdicts to bursts of frames. Owned by one worker; not safe
// for concurrent use.
type Pipeline struct {
	noCopy nocopy.NoCopy
	opts   Options
	// Stats are counted here, in plain memory, by the owning worker, and
	// published to counters by Publish.
	Stats    Snapshot
	counters *Counters
	// Tracker is this worker's connection tracker.
	Tracker *conntrack.Tracker
	rules   *atomic.Pointer[filter.Active]
	lastGen uint32
	// ws is this worker's part of the burst's rule set state (counters,
	// rate-limit buckets), set by begin.
	ws *filter.WorkerState
	// hits aggregates rule counters within a burst: one atomic update per
	// distinct decision per burst instead of one per packet.
	hits       [BurstSize]hit
	nhits      int
	lastReject reject.Kind
	// decision is what decided the packet being judged (NoDecision: not
	// the rules).
	decision uint32
	// batch stages the burst's lookups (conntrack.Tracker.Stage); csums
	// is the work done while they load.
	batch conntrack.Batch
	csums checksums
	// csumOK holds each IP packet's checksum verdict (tracked bursts only).
	csumOK [BurstSize]bool

	mailbox mailbox

	// REJECT answers and LOG records, each capped per second (a second's
	// worth at once).
	rejectTB, logTB rate.Bucket
	now             int64
	lastServe       int64 // when a busy worker last served a control step

	frags fragTable
	trace traceState
	// lastReap and reapAcc pace the sweep for expired entries (reapDue).
	lastReap int64
	reapAcc  uint64
}

type hit struct {
	decision       uint32
	packets, bytes uint64
}

// NewPipeline returns a pipeline that tracks connections with tr, judges
// with the rule set rules points to (loaded once per burst), and publishes
// its counters to c.
func NewPipeline(opts Options, tr *conntrack.Tracker, rules *atomic.Pointer[filter.Active], c *Counters) *Pipeline {
	pl := &Pipeline{opts: opts, Tracker: tr, rules: rules, counters: c}
	pl.rejectTB = rate.PerSecond(opts.RejectPerSecond, opts.RejectPerSecond)
	pl.logTB = rate.PerSecond(opts.LogPerSecond, opts.LogPerSecond)
	pl.frags.init(&pl.Stats)
	pl.trace.recs = new([BurstSize]TraceRecord)
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // crypto/rand never fails on Linux
	pl.frags.seed = binary.LittleEndian.Uint64(seed[:])
	return pl
}

// Counters returns the pipeline's published counters.
func (pl *Pipeline) Counters() *Counters { return pl.counters }

// Publish makes Stats visible to readers of Counters.
func (pl *Pipeline) Publish() {
	pl.Stats.FragmentsHeld = uint64(pl.frags.held())
	pl.counters.Publish(&pl.Stats)
	pl.counters.publishCT(pl.Tracker)
}

// Decode decodes frame i of the burst, whose checksums the NIC judged as
// csum says (packet.CsumHint; 0 if it did not). It exists so that feeders
// (the DPDK worker, tests, benchmarks) fill a Burst the same way.
func (b *Burst) Decode(i int, frame []byte, csum uint8) {
	packet.Decode(frame, &b.Parsed[i])
	b.Csum[i] = csum
}

// DecodeChained marks frame i as a frame spread over chained mbufs: it is
// larger than one mbuf's data room, and dpfw judges only whole frames in
// one buffer, so it is dropped (reason oversize) instead of being decoded
// from its first segment.
func (b *Burst) DecodeChained(i int) {
	packet.Decode(nil, &b.Parsed[i])
	b.Parsed[i].Reason = packet.ReasonOversize
	b.Csum[i] = 0
}

// checksumOK validates packet i's checksums as configured.
func (pl *Pipeline) checksumOK(b *Burst, i int) bool {
	return pl.opts.Checksum == ChecksumOff || packet.ChecksumOK(&b.Parsed[i], b.Csum[i], pl.opts.Checksum == ChecksumFull)
}

// Process gives a verdict to frames [0, b.N) of b, received at time now (ns,
// monotonic, from the worker's clock) on input port in. The rule set is
// loaded once, so a burst is judged by one consistent rule set. Fragments
// may be held (Burst.Held) and held ones released (Released). It never
// allocates.
func (pl *Pipeline) Process(b *Burst, in uint16, now int64) {
	n := min(b.N, BurstSize)
	f := pl.begin(now)
	if pl.opts.Standby != nil && pl.opts.Standby.Load() {
		pl.dropAll(b, n, filter.DropStandby)
		pl.end(pl.reapDue(), fragsPerBurst)
		pl.serveControl(true)
		return
	}
	var pi PortInfo
	if int(in) < len(pl.opts.Ports) {
		pi = pl.opts.Ports[in]
	} else {
		pi = PortInfo{Out: filter.NoPort}
	}
	if pl.opts.Steer && !b.FromRing && pl.opts.Workers > 1 {
		if pl.steer(b, n, pi.Zone) == n {
			return // every packet belongs to other workers
		}
	} else {
		for i := 0; i < n; i++ {
			b.Owner[i] = -1
		}
	}
	if f.AcceptsAll() {
		pl.acceptAll(f, b, n)
	} else {
		track := f.UsesState()
		if track {
			pl.csums = checksums{pl, b}
			pl.Tracker.Stage(&pl.batch, b.Parsed[:n], b.Owner[:n], pi.Zone, &pl.csums)
		}
		if pl.trace.set != nil {
			pl.traceBurst(b, n, in, pi.Zone)
		}
		pl.judgeBurst(f, b, n, in, &pi, track)
		if pl.trace.on {
			pl.traceFinish(f, b, n, &pi)
		}
	}
	pl.end(pl.reapDue(), fragsPerBurst)
	pl.serveControl(true)
}

// dropAll drops frames [0, n) of b for reason why.
func (pl *Pipeline) dropAll(b *Burst, n int, why filter.DropReason) {
	for i := 0; i < n; i++ {
		b.Owner[i], b.Verdict[i], b.Reason[i] = -1, filter.Drop, why
		b.State[i], b.Held[i], b.Answer[i] = conntrack.Untracked, 0, 0
	}
	pl.Stats.Drops[why] += uint64(n)
}

// begin starts a burst or an idle round at now and returns the rule set.
func (pl *Pipeline) begin(now int64) *filter.Active {
	f := pl.rules.Load()
	pl.Tracker.SetNow(now)
	pl.now = now
	if f.Gen != pl.lastGen {
		// The cache holds only the generation's low bits: clear it when the
		// rest changes, so that a stale decision can never look current.
		if conntrack.GenerationEpoch(f.Gen) != conntrack.GenerationEpoch(pl.lastGen) {
			pl.Tracker.Table.ClearDecisions()
		}
		pl.lastGen = f.Gen
	}
	pl.ws = f.State.Worker(pl.opts.Worker)
	if pl.opts.Trace != nil {
		pl.trace.set = pl.opts.Trace.Load()
	}
	pl.nhits = 0
	pl.frags.begin()
	return f
}

// reapDue is how many entries a burst at pl.now examines: the table's
// share of the clock since the last burst, a sweep per reapSweep.
func (pl *Pipeline) reapDue() int {
	el := min(max(pl.now-pl.lastReap, 0), reapSweep)
	pl.lastReap = pl.now
	pl.reapAcc += uint64(pl.Tracker.Table.Cap()) * uint64(el)
	n := pl.reapAcc / uint64(reapSweep)
	pl.reapAcc %= uint64(reapSweep)
	return int(min(n, reapPerBurst))
}

// end adds the burst's rule hits to the rule set's counters and does the
// housekeeping of one burst: examine reap connection entries and frags
// fragment slots for expiry.
func (pl *Pipeline) end(reap, frags int) {
	ctr := pl.ws.Counters()
	for k := 0; k < pl.nhits; k++ {
		h := &pl.hits[k]
		c := &ctr[h.decision]
		c.Packets.Add(h.packets)
		c.Bytes.Add(h.bytes)
	}
	pl.nhits = 0
	if reap > 0 {
		pl.Tracker.Reap(reap)
	}
	pl.frags.expire(pl.now, frags)
}

// checksums validates a burst's checksums while the tracker stages its
// lookups (conntrack.Between).
type checksums struct {
	pl *Pipeline
	b  *Burst
}

// Between validates the checksums of the group's IP packets of this worker.
func (c *checksums) Between(g, e int) {
	for i := g; i < e; i++ {
		if c.b.Owner[i] < 0 && c.b.Parsed[i].IsIP() {
			c.pl.csumOK[i] = c.pl.checksumOK(c.b, i)
		}
	}
}

// judgeBurst judges the burst's packets and counts their verdicts; a held
// fragment is counted when its datagram is decided. The loop is one
// function, its common path without calls but the tracker's and the
// classifier's.
func (pl *Pipeline) judgeBurst(f *filter.Active, b *Burst, n int, in uint16, pi *PortInfo, track bool) {
	for i := 0; i < n; i++ {
		if b.Owner[i] >= 0 {
			continue
		}
		p := &b.Parsed[i]
		b.State[i] = conntrack.Untracked
		b.Held[i], b.Answer[i] = 0, 0
		pl.decision = NoDecision
		held := false
		v, r, ip := pl.linkVerdict(p)
		if ip {
			switch {
			case track && !pl.csumOK[i]:
				v, r = filter.Drop, filter.DropBadChecksum
				b.State[i] = conntrack.Invalid
			case p.Frag != 0:
				v, r, held = pl.fragment(f, b, i, in, pi, track)
			case track:
				v, r = pl.judge(f, p, in, pi, i, b)
			default:
				v, r = pl.judgeStateless(f, p, in, pi, i)
			}
		}
		b.Verdict[i], b.Reason[i], b.Decision[i] = v, r, pl.decision
		if held {
			continue
		}
		pl.Stats.count(v, r)
		if v == filter.Reject && reject.Answerable(p) && pl.rejectTB.Allow(pl.now) {
			b.Answer[i] = 1 + uint8(pl.lastReject)
		}
	}
}

// count counts one packet's verdict.
func (s *Snapshot) count(v filter.Verdict, r filter.DropReason) {
	switch v {
	case filter.Accept:
		s.Accepted++
	case filter.Reject:
		s.Rejected++
		s.Drops[r]++
	default:
		s.Drops[r]++
	}
}

// fragment handles fragment i: it joins its datagram and is held until the
// datagram is complete; the fragment that completes it has the datagram
// judged, from its first fragment, and gives its verdict to every fragment
// held (see frag.go).
func (pl *Pipeline) fragment(f *filter.Active, b *Burst, i int, in uint16, pi *PortInfo, track bool) (filter.Verdict, filter.DropReason, bool) {
	ft := &pl.frags
	p := &b.Parsed[i]
	sum := track && pl.opts.Checksum == ChecksumFull
	e, r := ft.join(p, pi.Zone, pl.now, sum)
	if r != filter.DropNone {
		return filter.Drop, r, false
	}
	if !ft.slots[e].runs.settled {
		s, r := ft.hold(e, p)
		if r != filter.DropNone {
			return filter.Drop, r, false
		}
		b.Held[i] = uint16(s) + 1
		return filter.Accept, filter.DropNone, true
	}
	q, r := ft.datagram(e, p)
	if r == filter.DropNone && sum && !ft.checksumOK(e, &q) {
		r = filter.DropBadChecksum
		b.State[i] = conntrack.Invalid
	}
	if r != filter.DropNone {
		ft.releaseAll(e, filter.Drop, r, NoDecision, b.State[i])
		return filter.Drop, r, false
	}
	// A staged key is the first fragment's own (later and short first
	// fragments are never staged), so judge may use it.
	var v filter.Verdict
	if track {
		v, r = pl.judge(f, &q, in, pi, i, b)
	} else {
		v, r = pl.judgeStateless(f, &q, in, pi, i)
	}
	ft.releaseAll(e, v, r, pl.decision, b.State[i])
	return v, r, false
}

// Released returns the held fragments the last Process or Idle decided.
// The worker takes their mbufs from its held slots before the next call.
func (pl *Pipeline) Released() []Release { return pl.frags.rel[:pl.frags.nrel] }

// FlushFragments drops every held fragment (shutdown); Released lists them.
func (pl *Pipeline) FlushFragments() { pl.frags.flush() }

// linkVerdict judges what needs no more than the link layer: a malformed
// frame is dropped with its reason (filter.DropReason mirrors
// packet.Reason), a non-IP one passes or drops (dataplane.non_ip). ip
// reports an IP packet, which the caller judges.
func (pl *Pipeline) linkVerdict(p *packet.Parsed) (v filter.Verdict, r filter.DropReason, ip bool) {
	switch p.Kind {
	case packet.Malformed:
		return filter.Drop, filter.DropReason(p.Reason), false
	case packet.NonIP:
		if !pl.opts.PassNonIP {
			return filter.Drop, filter.DropNonIP, false
		}
		return filter.Accept, filter.DropNone, false
	}
	return filter.Accept, filter.DropNone, true
}

// acceptAll handles a burst under a rule set that accepts everything:
// malformed frames (and non-IP ones, if so configured) are still dropped;
// the rest pass, counted once per burst against the FORWARD policy.
func (pl *Pipeline) acceptAll(f *filter.Active, b *Burst, n int) {
	st := &pl.Stats
	var pk, by [2]uint64 // IPv4, IPv6
	for i := 0; i < n; i++ {
		if b.Owner[i] >= 0 {
			continue
		}
		p := &b.Parsed[i]
		b.State[i] = conntrack.Untracked
		b.Held[i], b.Answer[i] = 0, 0
		v, r, ip := pl.linkVerdict(p)
		if ip {
			fam := 0
			if p.Kind == packet.IPv6 {
				fam = 1
			}
			pk[fam]++
			by[fam] += uint64(p.L3Len())
		}
		b.Verdict[i], b.Reason[i] = v, r
		if v == filter.Accept {
			st.Accepted++
		} else {
			st.Drops[r]++
		}
	}
	for fam := range pk {
		if pk[fam] > 0 {
			c := &pl.ws.Counters()[f.ForwardPolicyDecision(fam == 1)]
			c.Packets.Add(pk[fam])
			c.Bytes.Add(by[fam])
		}
	}
}

// Idle does housekeeping when a poll round found no packet.
func (pl *Pipeline) Idle(now int64) {
	pl.begin(now)
	pl.end(reapPerIdle, reapPerIdle)
	pl.serveControl(false)
}

// steer finds each packet's owner; it returns how many belong to others.
func (pl *Pipeline) steer(b *Burst, n int, zone uint16) int {
	others := 0
	nw := uint64(pl.opts.Workers)
	for i := 0; i < n; i++ {
		b.Owner[i] = -1
		p := &b.Parsed[i]
		if !p.IsIP() {
			continue
		}
		var t conntrack.Tuple
		if (p.Proto == header.ProtoICMP || p.Proto == header.ProtoICMPv6) && packet.IsICMPError(p.Proto, p.ICMPType) {
			// An ICMP error belongs with the connection it quotes.
			q, ok := conntrack.QuotedTuple(p.Payload(), p.Kind == packet.IPv6, zone)
			if !ok {
				continue
			}
			t = q
		} else {
			t = conntrack.TupleOf(p, zone)
		}
		// By address pair, so that related connections (FTP data) land on
		// the worker holding their control connection.
		if o := int(conntrack.PairHash(pl.opts.SteerSeed, &t) % nw); o != pl.opts.Worker {
			b.Owner[i] = int8(o)
			b.Verdict[i], b.Reason[i] = filter.Accept, filter.DropNone
			others++
		}
	}
	pl.Stats.Steered += uint64(others)
	return others
}

// classify runs FORWARD and, on links with an inside, INPUT or OUTPUT when
// FORWARD accepts. fwd is the FORWARD rule (not its policy) that accepted
// before the second chain decided, or -1: its counter must be counted too,
// as iptables counts the rule that accepted a packet in each chain it
// traversed.
func (pl *Pipeline) classify(f *filter.Active, p *packet.Parsed, state uint8, in uint16, pi *PortInfo, path *filter.Path) (r filter.Result, fwd int32) {
	ctx := filter.Ctx{State: pl.ws, Now: pl.now, Path: path}
	r = f.Run(ctx, p, state, filter.HookForward, in, pi.Out)
	if r.Verdict != filter.Accept || pi.Hook == filter.HookForward {
		return r, -1
	}
	first := r
	r = f.Run(ctx, p, state, pi.Hook, in, pi.Out)
	r.Volatile = r.Volatile || first.Volatile
	if r.Logged < 0 {
		r.Logged = first.Logged
	}
	return r, first.Rule
}

// judgeStateless classifies a packet when no rule uses connection state.
func (pl *Pipeline) judgeStateless(f *filter.Active, p *packet.Parsed, in uint16, pi *PortInfo, i int) (filter.Verdict, filter.DropReason) {
	r, fwd := pl.classify(f, p, conntrack.Untracked.Mask(), in, pi, pl.trace.paths[i&(BurstSize-1)])
	d := f.Decision(r)
	pl.decision = d
	pl.Stats.Classified++
	pl.countHit(d, uint64(p.L3Len()))
	if fwd >= 0 {
		pl.countHit(uint32(fwd), uint64(p.L3Len()))
	}
	if r.Logged >= 0 {
		pl.logPacket(f, p, uint32(r.Logged), conntrack.Untracked, in, pi.Out)
	}
	if v := f.DecisionVerdict(d); v != filter.Accept {
		if v == filter.Reject {
			pl.lastReject = f.RejectKind(d)
		}
		return v, filter.DropRule
	}
	return filter.Accept, filter.DropNone
}

// judge tracks and classifies one IP packet.
func (pl *Pipeline) judge(f *filter.Active, p *packet.Parsed, in uint16, pi *PortInfo, i int, b *Burst) (filter.Verdict, filter.DropReason) {
	res := pl.Tracker.TrackStaged(&pl.batch, i, p, pi.Zone)
	if res.Full {
		return filter.Drop, filter.DropTableFull
	}
	if res.Limited {
		return filter.Drop, filter.DropNewRate
	}
	if res.HelperDrop {
		return filter.Drop, filter.DropHelper
	}
	state := res.State
	b.State[i], pl.trace.why[i&(BurstSize-1)] = state, res.Reason
	// The connection's own packets (not ICMP errors about it) may use and
	// fill its per-direction decision cache.
	cacheable := state != conntrack.Invalid && state != conntrack.Untracked &&
		!((p.Proto == header.ProtoICMP || p.Proto == header.ProtoICMPv6) && packet.IsICMPError(p.Proto, p.ICMPType)) &&
		!(p.Proto == header.ProtoTCP && f.FlagSensitive())
	var c *conntrack.Conn
	var d uint32
	cached := false
	if cacheable {
		c = pl.Tracker.Table.Conn(res.Conn)
		d, cached = c.CachedDecision(f.Gen, state, res.Dir)
	}
	if cached {
		pl.Stats.CacheHits++
	} else {
		r, fwd := pl.classify(f, p, state.Mask(), in, pi, pl.trace.paths[i&(BurstSize-1)])
		d = f.Decision(r)
		if fwd >= 0 {
			// Counted here only: a decision that needs two counters
			// is not cached.
			pl.countHit(uint32(fwd), uint64(p.L3Len()))
		}
		if cacheable && r.Logged < 0 && !r.Volatile && fwd < 0 {
			c.CacheDecision(f.Gen, state, res.Dir, d)
		}
		if r.Logged >= 0 {
			pl.logPacket(f, p, uint32(r.Logged), state, in, pi.Out)
		}
		pl.Stats.Classified++
	}
	pl.countHit(d, uint64(p.L3Len()))
	pl.decision = d
	v := f.DecisionVerdict(d)
	if v == filter.Reject {
		pl.lastReject = f.RejectKind(d)
	}
	switch {
	case res.Created && v == filter.Accept:
		pl.Tracker.Confirm(res.Conn)
	case res.Created:
		// Unconfirmed: the connection's first packet was dropped, so the
		// connection does not exist (netfilter discards such entries).
		pl.Tracker.Delete(res.Conn)
	}
	switch v {
	case filter.Accept:
		return v, filter.DropNone
	default:
		if state == conntrack.Invalid {
			return v, filter.DropInvalid
		}
		return v, filter.DropRule
	}
}

func (pl *Pipeline) countHit(d uint32, bytes uint64) {
	for k := 0; k < pl.nhits; k++ {
		if pl.hits[k].decision == d {
			pl.hits[k].packets++
			pl.hits[k].bytes += bytes
			return
		}
	}
	if pl.nhits < len(pl.hits) {
		pl.hits[pl.nhits] = hit{decision: d, packets: 1, bytes: bytes}
		pl.nhits++
	}
}

// logPacket hands a LOG record to the control side without ever blocking:
// over the rate limit, or with the channel full, the record is counted as
// lost instead.
func (pl *Pipeline) logPacket(f *filter.Active, p *packet.Parsed, rule uint32, st conntrack.State, in, out uint16) {
	if pl.opts.Log == nil {
		return
	}
	if !pl.logTB.Allow(pl.now) {
		pl.Stats.LogsSuppressed++
		return
	}
	rec := LogRecord{Rule: rule, Generation: f.Gen, In: in, Out: out, State: st, Family: 4, Proto: p.Proto,
		TCPFlags: p.TCPFlags, Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Len: p.L3Len()}
	if p.Kind == packet.IPv6 {
		rec.Family = 6
	}
	select {
	case pl.opts.Log <- rec:
	default:
		pl.Stats.LogsSuppressed++
	}
}

// PipelineBytes is a pipeline's own memory (burst state, fragment table).
func PipelineBytes() int { return int(unsafe.Sizeof(Pipeline{})) }
