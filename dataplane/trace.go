package dataplane

import (
	"net/netip"

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
	Decision uint16
	Gen      uint32
	// Path is every rule the packet matched, in order, and the policy
	// that decided (empty when Cached: the rules did not run).
	Path filter.Path
}

// NewTraceRing returns a worker's trace ring.
func NewTraceRing() *TraceRing { return ring.New[TraceRecord](TraceRingSize) }

// traceState is what a pipeline gathers about the packet being traced;
// the record is kept out of line, so that the pipeline's hot fields stay
// as packed as without tracing.
type traceState struct {
	set  *TraceSet // loaded once per burst; nil: no trace attached
	mask uint8     // the packet's traces (0: not traced)
	rec  *TraceRecord
}

// traceStart decides whether packet p (entering on in, link zone) is
// traced and, if so, notes what is known before it is judged.
func (pl *Pipeline) traceStart(p *packet.Parsed, in, zone uint16) {
	t := &pl.trace
	if t.mask = t.set.match(p, in); t.mask == 0 {
		return
	}
	*t.rec = TraceRecord{Mask: t.mask, Worker: uint8(pl.opts.Worker), In: in, Decision: NoDecision, State: conntrack.Untracked}
	if !p.IsIP() {
		return
	}
	k := conntrack.TupleOf(p, zone)
	if idx, _, ok := pl.Tracker.Table.Lookup(&k); ok {
		t.rec.Existed, t.rec.TCPBefore = true, pl.Tracker.Table.Conn(idx).TCP.State
	}
}

// traceTracked notes the tracker's result for the traced packet.
func (pl *Pipeline) traceTracked(res *conntrack.Result, cached bool) {
	r := pl.trace.rec
	r.Invalid, r.Cached = res.Reason, cached
	if res.State != conntrack.Invalid && !res.Full && !res.Limited {
		r.TCPAfter = pl.Tracker.Table.Conn(res.Conn).TCP.State
	}
}

// traceEnd writes the record of packet i of b, now decided.
func (pl *Pipeline) traceEnd(f *filter.Active, b *Burst, i int, pi *PortInfo) {
	t := &pl.trace
	r, p := t.rec, &b.Parsed[i]
	r.Time, r.Out, r.Gen = pl.now, pi.Out, f.Gen
	r.Kind, r.Proto, r.TCPFlags, r.ICMPType, r.ICMPCode = p.Kind, p.Proto, p.TCPFlags, p.ICMPType, p.ICMPCode
	r.Src, r.Dst, r.SrcPort, r.DstPort = p.Src, p.Dst, p.SrcPort, p.DstPort
	r.Len = uint16(len(p.Buf))
	if p.IsIP() {
		r.Len = uint16(p.L3Len())
	}
	r.State, r.Verdict, r.Reason, r.Decision = b.State[i], b.Verdict[i], b.Reason[i], b.Decision[i]
	if r.Cached {
		r.Path = filter.Path{}
	}
	pl.opts.TraceRing.Put(r)
	t.mask = 0
}

// TraceRing is a worker's ring of trace records.
type TraceRing = ring.Ring[TraceRecord]
