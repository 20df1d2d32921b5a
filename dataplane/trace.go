package dataplane

import (
	"net/netip"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/internal/ring"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Packet traces (dpfw trace, like nft monitor trace): the control side
// publishes the attached filters as an immutable TraceSet behind an atomic
// pointer (Options.Trace); a pipeline loads it once per burst, and when it
// is nil, the common case, tracing costs a predictable branch per packet.
// A packet some filter selects is judged as any other and, once decided,
// described by one TraceRecord in the worker's ring (Options.TraceRing):
// never blocking, a full ring counts the record lost.

// MaxTraces is how many traces may be attached at once.
const MaxTraces = 8

// TraceRingSize is each worker's trace ring, in records.
const TraceRingSize = 1024

// TraceFilter selects the packets a trace records; zero fields select any
// packet.
type TraceFilter struct {
	// Proto is the IP protocol (0: any).
	Proto uint8
	// Src and Dst are prefixes the addresses must be in (the zero
	// Prefix: any).
	Src, Dst netip.Prefix
	// SrcPort and DstPort are TCP, UDP or SCTP ports (0: any; a packet of
	// another protocol has none).
	SrcPort, DstPort uint16
	// In is the input port id (AnyPort: any).
	In uint16
}

// AnyPort is TraceFilter.In for packets of every port.
const AnyPort = 0xffff

// TraceSet is the traces attached: Used marks the slots in use.
type TraceSet struct {
	Filters [MaxTraces]TraceFilter
	Used    uint8
}

// match returns the slots whose filters select p, entering on port in.
func (s *TraceSet) match(p *packet.Parsed, in uint16) uint8 {
	var m uint8
	for i := range s.Filters {
		if s.Used&(1<<i) != 0 && s.Filters[i].match(p, in) {
			m |= 1 << i
		}
	}
	return m
}

func (f *TraceFilter) match(p *packet.Parsed, in uint16) bool {
	if (f.In != AnyPort && in != f.In) || (f.Proto != 0 && p.Proto != f.Proto) {
		return false
	}
	if f.SrcPort != 0 || f.DstPort != 0 {
		if p.Proto != header.ProtoTCP && p.Proto != header.ProtoUDP && p.Proto != header.ProtoSCTP {
			return false
		}
		if (f.SrcPort != 0 && p.SrcPort != f.SrcPort) || (f.DstPort != 0 && p.DstPort != f.DstPort) {
			return false
		}
	}
	return inPrefix(f.Src, p, &p.Src) && inPrefix(f.Dst, p, &p.Dst)
}

// inPrefix reports whether address a of p is in pre (any, if pre is zero).
func inPrefix(pre netip.Prefix, p *packet.Parsed, a *[16]byte) bool {
	if !pre.IsValid() {
		return true
	}
	switch p.Kind {
	case packet.IPv4:
		return pre.Contains(netip.AddrFrom4([4]byte(a[:4])))
	case packet.IPv6:
		return pre.Contains(netip.AddrFrom16(*a))
	}
	return false
}

// TraceRecord describes one traced packet once it was decided.
type TraceRecord struct {
	// Time is the worker's clock (ns, monotonic); Mask the traces whose
	// filters selected the packet.
	Time   int64
	Mask   uint8
	Worker uint8
	// In is the input port, Out the port a forwarded packet leaves by.
	In, Out uint16
	// The packet: Kind, protocol, addresses, ports, TCP flags, ICMP type
	// and code, IP length (frame length for non-IP).
	Kind               packet.Kind
	Proto, TCPFlags    uint8
	ICMPType, ICMPCode uint8
	Len                uint16
	SrcPort, DstPort   uint16
	Src, Dst           [16]byte
	// State is its connection state (UNTRACKED when not tracked); Invalid
	// why it is INVALID. Existed says its connection existed before it, in
	// TCP state TCPBefore; TCPAfter is the state it left (TCP only).
	State               conntrack.State
	Invalid             conntrack.InvalidReason
	Existed             bool
	TCPBefore, TCPAfter tcpstate.State
	// Verdict and Reason are the outcome; Decision the rule or policy
	// that decided (NoDecision: not the rules), Cached whether it came
	// from the connection's verdict cache; Gen the rule set's generation.
	Verdict  filter.Verdict
	Reason   filter.DropReason
	Cached   bool
	Decision uint32
	Gen      uint32
	// Path is every rule the packet matched, in order, and the policy
	// that decided (empty when Cached: the rules did not run).
	Path filter.Path
}

// NewTraceRing returns a worker's trace ring.
func NewTraceRing() *TraceRing { return ring.New[TraceRecord](TraceRingSize) }

// traceState is what a pipeline gathers about a burst's traced packets.
// With no trace attached it costs two branches per burst: the matching
// and the records happen in passes of their own before and after the
// judging loop, which stays free of calls; classification is handed each
// packet's path (nil when untraced) without a branch.
type traceState struct {
	set *TraceSet // loaded once per burst; nil: no trace attached
	on  bool      // some packet of this burst is traced
	// masks are the traces of each packet of the burst, recs their
	// records (allocated once, with the pipeline), paths where
	// classification records a traced packet's path (nil: untraced).
	masks [BurstSize]uint8
	recs  *[BurstSize]TraceRecord
	paths [BurstSize]*filter.Path
	// why is each tracked packet's INVALID reason.
	why [BurstSize]conntrack.InvalidReason
}

// traceBurst finds the packets of b the traces select (entering on in,
// link zone) and notes what is known before they are judged.
func (pl *Pipeline) traceBurst(b *Burst, n int, in, zone uint16) {
	t := &pl.trace
	for i := 0; i < n; i++ {
		p := &b.Parsed[i]
		if t.masks[i] = 0; b.Owner[i] >= 0 {
			continue
		}
		if t.masks[i] = t.set.match(p, in); t.masks[i] == 0 {
			continue
		}
		t.on = true
		r := &t.recs[i]
		*r = TraceRecord{Mask: t.masks[i], Worker: uint8(pl.opts.Worker), In: in, Decision: NoDecision, State: conntrack.Untracked}
		t.paths[i], t.why[i] = &r.Path, conntrack.InvalidNone
		if !p.IsIP() {
			continue
		}
		r.Existed, r.TCPBefore = pl.tcpState(p, zone)
	}
}

// tcpState returns the TCP state of p's connection, if it has one.
func (pl *Pipeline) tcpState(p *packet.Parsed, zone uint16) (bool, tcpstate.State) {
	k := conntrack.TupleOf(p, zone)
	idx, _, ok := pl.Tracker.Table.Lookup(&k)
	if !ok {
		return false, 0
	}
	return true, pl.Tracker.Table.Conn(idx).TCP.State
}

// traceFinish writes the records of the burst's traced packets, now
// decided (a held fragment is traced when its datagram is decided).
func (pl *Pipeline) traceFinish(f *filter.Active, b *Burst, n int, pi *PortInfo) {
	t := &pl.trace
	for i := 0; i < n; i++ {
		if t.masks[i] == 0 {
			continue
		}
		t.masks[i], t.paths[i] = 0, nil
		if b.Held[i] != 0 {
			continue
		}
		r, p := &t.recs[i], &b.Parsed[i]
		r.Time, r.Out, r.Gen = pl.now, pi.Out, f.Gen
		r.Kind, r.Proto, r.TCPFlags, r.ICMPType, r.ICMPCode = p.Kind, p.Proto, p.TCPFlags, p.ICMPType, p.ICMPCode
		r.Src, r.Dst, r.SrcPort, r.DstPort = p.Src, p.Dst, p.SrcPort, p.DstPort
		r.Len = uint16(len(p.Buf))
		if p.IsIP() {
			r.Len = uint16(p.L3Len())
		}
		r.State, r.Verdict, r.Reason, r.Decision = b.State[i], b.Verdict[i], b.Reason[i], b.Decision[i]
		tracked := r.State != conntrack.Untracked && r.State != conntrack.Invalid
		// Classification always records a step (a rule or a built-in
		// chain's policy): a decision without one came from the cache.
		r.Cached = tracked && r.Decision != NoDecision && r.Path.N == 0
		if r.State == conntrack.Invalid && b.Reason[i] != filter.DropBadChecksum {
			r.Invalid = t.why[i]
		}
		if tracked && p.Proto == header.ProtoTCP {
			_, r.TCPAfter = pl.tcpState(p, pi.Zone)
		}
		pl.opts.TraceRing.Put(r)
	}
	t.on = false
}

// TraceRing is a worker's ring of trace records.
type TraceRing = ring.Ring[TraceRecord]

// TraceBytes is a worker's trace memory: its ring and a burst's records.
func TraceBytes() int {
	return (TraceRingSize + BurstSize) * int(unsafe.Sizeof(TraceRecord{}))
}
