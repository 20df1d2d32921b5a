package conntrack

import (
	"time"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/internal/nocopy"
	"github.com/dpfw/dpfw/internal/rate"
	"github.com/dpfw/dpfw/internal/ring"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Timeouts are per-state idle timeouts. Defaults are Linux netfilter's
// (nf_conntrack_proto_{tcp,udp,icmp,generic}.c, as of Linux 6.x).
type Timeouts struct {
	TCP        [tcpstate.NumStates]time.Duration
	TCPRetrans time.Duration // after 3 retransmissions
	TCPUnack   time.Duration // while data is unacknowledged
	UDP        time.Duration // before a reply
	UDPStream  time.Duration // after a reply
	ICMP       time.Duration
	Generic    time.Duration
}

// DefaultTimeouts returns netfilter's defaults.
func DefaultTimeouts() Timeouts {
	var t Timeouts
	t.TCP[tcpstate.None] = 2 * time.Minute
	t.TCP[tcpstate.SynSent] = 2 * time.Minute
	t.TCP[tcpstate.SynRecv] = 60 * time.Second
	t.TCP[tcpstate.Established] = 5 * 24 * time.Hour
	t.TCP[tcpstate.FinWait] = 2 * time.Minute
	t.TCP[tcpstate.CloseWait] = 60 * time.Second
	t.TCP[tcpstate.LastAck] = 30 * time.Second
	t.TCP[tcpstate.TimeWait] = 2 * time.Minute
	t.TCP[tcpstate.Close] = 10 * time.Second
	t.TCP[tcpstate.SynSent2] = 2 * time.Minute
	t.TCPRetrans = 5 * time.Minute
	t.TCPUnack = 5 * time.Minute
	t.UDP = 30 * time.Second
	t.UDPStream = 120 * time.Second
	t.ICMP = 30 * time.Second
	t.Generic = 600 * time.Second
	return t
}

// tcpMaxRetrans is netfilter's nf_conntrack_tcp_max_retrans.
const tcpMaxRetrans = 3

// Config configures a Tracker.
type Config struct {
	// Capacity is the most connections the tracker holds.
	Capacity int
	Timeouts Timeouts
	TCP      tcpstate.Options
	// Seed keys the table's hash: a one-time random value, immutable.
	Seed uint64
	// FTP configures the FTP helper (RELATED data connections).
	FTP FTPConfig
	// NewPerSecond caps the connections this tracker creates per second
	// (0: no cap); NewBurst is how many it may create at once (at least 1).
	// Packets over the cap are refused (Result.Limited) and leave no entry.
	NewPerSecond, NewBurst int
	// Adaptive shrinks the timeouts of unassured connections (half-open
	// TCP, unanswered UDP and ICMP: netfilter's early-drop candidates) as
	// the table fills, as pf's adaptive timeouts do: above AdaptiveStart
	// entries each is scaled by (AdaptiveEnd-entries)/(AdaptiveEnd-
	// AdaptiveStart), reaching 0 at AdaptiveEnd, but never below
	// AdaptiveFloor after the connection's last packet (so handshakes in
	// progress can finish). AdaptiveStart 0 turns it off.
	AdaptiveStart, AdaptiveEnd int
	AdaptiveFloor              time.Duration
	// Accounting counts each connection's packets and bytes per direction
	// (nf_conntrack_acct), at AcctBytes more per connection.
	Accounting bool
	// Timestamps keeps when each connection started
	// (nf_conntrack_timestamp), at StampBytes more per connection.
	Timestamps bool
	// Sync gives the tracker a ring of sync records (SyncEvents) for
	// state sync, at SyncRingBytes.
	Sync bool
	// Worker is the worker the tracker belongs to: it goes into the
	// connections' ids, so that they differ across workers.
	Worker int
}

// InvalidReason says why a packet is INVALID. Each has a counter.
type InvalidReason uint8

// Invalid reasons. InvalidTCP + r stands for the TCP tracker's reason r
// (tcpstate.Reason, r ≥ 1); the others follow.
const (
	InvalidNone InvalidReason = 0
	InvalidTCP  InvalidReason = 1
)

// Invalid reasons other than the TCP tracker's.
const (
	InvalidICMPNotRequest  = InvalidTCP + InvalidReason(tcpstate.NumReasons) + iota
	InvalidICMPUnknownFlow // an ICMP error quoting no tracked connection
	InvalidICMPBadQuote    // the quoted packet cannot be parsed or does not match the error
	InvalidFragment        // a later fragment with no first fragment seen
	NumInvalidReasons
)

// String names the reason.
func (r InvalidReason) String() string {
	switch {
	case r == InvalidNone:
		return "none"
	case r < InvalidICMPNotRequest:
		return tcpstate.Reason(r - InvalidTCP).String()
	case r == InvalidICMPNotRequest:
		return "icmp_not_a_request"
	case r == InvalidICMPUnknownFlow:
		return "icmp_error_unknown_flow"
	case r == InvalidICMPBadQuote:
		return "icmp_error_bad_quote"
	case r == InvalidFragment:
		return "fragment_without_first"
	}
	return "unknown"
}

// Result is the tracker's answer for one packet.
type Result struct {
	// Conn is the entry (valid unless State is Invalid or Full is set);
	// for RELATED ICMP errors, the quoted connection.
	Conn  uint32
	State State
	Dir   Dir
	Outcome
}

// Outcome is the rest of a Result: why a packet is INVALID, whether the
// tracker refused it, and whether it created its entry. (Result is split so
// that neither struct has more than four fields: the compiler then keeps a
// Result in registers instead of copying it through the stack at every
// return, which cost 10% of the per-packet time.)
type Outcome struct {
	// Reason is set when State is Invalid.
	Reason InvalidReason
	// Full is set when a new connection found no room: drop the packet.
	Full bool
	// Limited is set when a new connection was over the NEW rate cap:
	// drop the packet.
	Limited bool
	// Events (embedded: a struct of more than four fields is not kept in
	// registers).
	Events
}

// Events are what a packet did to its entry.
type Events struct {
	// HelperDrop is set when the FTP helper found a malformed
	// announcement in the segment: drop it, as nf_conntrack_ftp does.
	HelperDrop bool
	// Created is set when this packet created the entry. Like netfilter,
	// which confirms a new connection only once its first packet is
	// accepted, the caller must Delete the entry if the packet is dropped.
	Created bool
}

// Stats are a tracker's counters, written by its owner only. The tags
// define their metrics (see dataplane.Snapshot); every field is a 64-bit
// integer or an array of them.
type Stats struct {
	Lookups uint64 `stat:"lookups_total,counter" help:"Connection table lookups."`
	Hits    uint64 `stat:"lookup_hits_total,counter" help:"Lookups that found a connection."`
	Created uint64 `stat:"created_total,counter" help:"Connections created."`
	Expired uint64 `stat:"expired_total,counter" help:"Connections removed by their timeout."`
	// EarlyDrops are unassured entries evicted to make room,
	// TableFullDrops new flows dropped with no room even after that,
	// RateLimited new flows over Config.NewPerSecond, Adaptive unassured
	// entries expired early by adaptive timeouts.
	EarlyDrops     uint64                    `stat:"early_drops_total,counter" help:"Unassured connections evicted to make room."`
	TableFullDrops uint64                    `stat:"table_full_drops_total,counter" help:"New connections dropped: no room even after early drop."`
	RateLimited    uint64                    `stat:"new_rate_drops_total,counter" help:"New connections dropped over conntrack.new_per_second."`
	Adaptive       uint64                    `stat:"adaptive_expired_total,counter" help:"Unassured connections expired early by adaptive timeouts (included in expired)."`
	Invalid        [NumInvalidReasons]uint64 `stat:"invalid_packets_total,counter" help:"Packets in state INVALID, by reason." label:"reason=invalid"`
	ByProto        [numProtoClasses]int64    `stat:"entries,gauge" help:"Tracked connections, by protocol." label:"protocol=protoclass"`
	TCPByState     [tcpstate.NumStates]int64 `stat:"tcp_entries,gauge" help:"Tracked TCP connections, by TCP state." label:"state=tcpstate"`
}

// Protocol classes for entry counts.
const (
	ProtoClassTCP = iota
	ProtoClassUDP
	ProtoClassICMP
	ProtoClassOther
	numProtoClasses
)

// ProtoClassNames names the protocol classes.
var ProtoClassNames = [numProtoClasses]string{"tcp", "udp", "icmp", "other"}

func protoClass(p uint8) int {
	switch p {
	case header.ProtoTCP:
		return ProtoClassTCP
	case header.ProtoUDP:
		return ProtoClassUDP
	case header.ProtoICMP, header.ProtoICMPv6:
		return ProtoClassICMP
	}
	return ProtoClassOther
}

// Tracker gives packets their connection state. It is owned by one worker
// and not safe for concurrent use.
type Tracker struct {
	noCopy nocopy.NoCopy
	cfg    Config
	Table  *Table
	// timeoutMs caches Timeouts in milliseconds.
	tcpMs                                              [tcpstate.NumStates]uint32
	retransMs, unackMs, udpMs, streamMs, icmpMs, genMs uint32
	now                                                int64  // ns, set by SetNow
	nowMs                                              uint32 // tracker clock in ms
	reapCursor                                         uint32
	Stats                                              Stats
	// Rate cap on new connections (conntrack.new_per_second).
	newRate rate.Bucket
	// Adaptive timeouts: scale (per mille, 1000 = none) of the timeouts
	// of unassured entries, set from the fill by SetNow; floor in ms.
	adaptPermille, adaptFloorMs uint32

	// FTP helper state (see helper.go).
	FTP        FTPStats
	helperDrop bool // set by ftpLine for the segment being inspected
	helpers    []helperSlot
	freeHelper int32
	expects    []expectation
	expectMs   uint32

	// events is where connection events go while someone listens;
	// syncRing the same events for state sync (nil: Config.Sync off).
	events   *EventRing
	syncRing *SyncRing
	// epoch is the wall-clock time of clock reading 0 (SetEpoch).
	epoch time.Time
}

// NewTracker returns a tracker with its table preallocated.
func NewTracker(cfg Config) *Tracker {
	tr := &Tracker{cfg: cfg, Table: NewTable(cfg.Capacity, cfg.Seed), events: ring.New[Event](EventRingSize)}
	if cfg.Sync {
		tr.syncRing = ring.New[SyncRecord](SyncRingSize)
	}
	if cfg.Accounting {
		tr.Table.enableAcct()
	}
	if cfg.Timestamps {
		tr.Table.enableStamps()
	}
	ms := func(d time.Duration) uint32 { return uint32(min(d.Milliseconds(), 1<<31-1)) }
	for i, d := range cfg.Timeouts.TCP {
		tr.tcpMs[i] = ms(d)
	}
	tr.retransMs, tr.unackMs = ms(cfg.Timeouts.TCPRetrans), ms(cfg.Timeouts.TCPUnack)
	tr.udpMs, tr.streamMs = ms(cfg.Timeouts.UDP), ms(cfg.Timeouts.UDPStream)
	tr.icmpMs, tr.genMs = ms(cfg.Timeouts.ICMP), ms(cfg.Timeouts.Generic)
	tr.freeHelper = -1
	tr.initFTP()
	tr.newRate = rate.PerSecond(cfg.NewPerSecond, cfg.NewBurst)
	tr.adaptPermille, tr.adaptFloorMs = 1000, ms(cfg.AdaptiveFloor)
	return tr
}

// SetNow sets the time (ns, monotonic, from the caller's clock) for the
// packets that follow. Workers call it once per burst.
func (tr *Tracker) SetNow(now int64) {
	tr.now = now
	tr.nowMs = uint32(now / int64(time.Millisecond))
	if st, end := tr.cfg.AdaptiveStart, tr.cfg.AdaptiveEnd; st > 0 {
		used := int(tr.Table.used)
		switch {
		case used <= st:
			tr.adaptPermille = 1000
		case used >= end:
			tr.adaptPermille = 0
		default:
			tr.adaptPermille = uint32((end - used) * 1000 / (end - st))
		}
	}
}

// AdaptiveScale returns the factor (0–1) applied to the timeouts of
// unassured connections at the table's current fill.
func (tr *Tracker) AdaptiveScale() float64 { return float64(tr.adaptPermille) / 1000 }

// expired reports whether c has timed out. Under adaptive timeouts, an
// unassured entry whose state's timeout is T expires once T×scale (but at
// least the floor) has passed since its last packet: its stored deadline
// was last packet + T, so the time left must exceed T×(1-scale).
func (tr *Tracker) expired(c *Conn) bool {
	left := int32(c.expires - tr.nowMs)
	if left <= 0 {
		return true
	}
	if tr.adaptPermille >= 1000 || c.Assured() {
		return false
	}
	t := tr.baseTimeout(c)
	keep := max(uint32(uint64(t)*uint64(tr.adaptPermille)/1000), tr.adaptFloorMs)
	return keep < t && left <= int32(t-keep)
}

// expire deletes an entry found expired, counting it (and whether adaptive
// timeouts cut it short).
func (tr *Tracker) expire(idx uint32) {
	if int32(tr.Table.Conn(idx).expires-tr.nowMs) > 0 {
		tr.Stats.Adaptive++
	}
	tr.Stats.Expired++
	tr.delete(idx, EndTimeout)
}

// baseTimeout is the configured timeout of c's protocol and state.
func (tr *Tracker) baseTimeout(c *Conn) uint32 {
	switch c.Orig.Proto {
	case header.ProtoTCP:
		return tr.tcpMs[c.TCP.State]
	case header.ProtoUDP:
		return tr.udpMs
	case header.ProtoICMP, header.ProtoICMPv6:
		return tr.icmpMs
	}
	return tr.genMs
}

// newAllowed applies the NEW rate cap (a token bucket on the tracker's clock).
func (tr *Tracker) newAllowed() bool {
	if !tr.newRate.Enabled() {
		return true
	}
	if !tr.newRate.Allow(tr.now) {
		tr.Stats.RateLimited++
		return false
	}
	return true
}

// SetEpoch says what wall-clock time the tracker's clock reading 0 is (the
// worker sets it when it starts its clock; a replay, the capture's start),
// so that timestamps read as times. Precondition: called by the tracker's
// owner.
func (tr *Tracker) SetEpoch(t time.Time) { tr.epoch = t }

// WallTime is the wall-clock time of the tracker's clock reading ns.
func (tr *Tracker) WallTime(ns int64) time.Time { return tr.epoch.Add(time.Duration(ns)) }

// Now returns the time set by SetNow.
func (tr *Tracker) Now() int64 { return tr.now }

// ExpiresIn returns the time left before c times out.
func (tr *Tracker) ExpiresIn(c *Conn) time.Duration {
	return time.Duration(int32(c.expires-tr.nowMs)) * time.Millisecond
}

// Track gives p (decoded, IP) its connection state, creating, updating or
// deleting entries as netfilter would. zone is the link the packet arrived
// on. It never allocates.
func (tr *Tracker) Track(p *packet.Parsed, zone uint16) Result {
	k := TupleOf(p, zone)
	return tr.trackHash(p, &k, tr.Table.Hash(&k), 0)
}

// trackHash is Track for a packet whose tuple k and hash h the caller
// computed already, and the hint the table's prefetch steps gave for it (0 for
// none), to prefetch a burst's buckets and entries before tracking it.
func (tr *Tracker) trackHash(p *packet.Parsed, k *Tuple, h uint64, hint uint32) Result {
	if p.Frag == packet.FragLater {
		return tr.invalid(InvalidFragment)
	}
	if (p.Proto == header.ProtoICMP || p.Proto == header.ProtoICMPv6) && packet.IsICMPError(p.Proto, p.ICMPType) {
		return tr.trackICMPError(p, k.Zone)
	}
	if p.Proto == header.ProtoICMPv6 && untrackedICMPv6(p.ICMPType) {
		return Result{State: Untracked}
	}
	return tr.track(p, k, h, hint)
}

func (tr *Tracker) invalid(r InvalidReason) Result {
	tr.Stats.Invalid[r]++
	return Result{State: Invalid, Outcome: Outcome{Reason: r}}
}

func (tr *Tracker) track(p *packet.Parsed, k *Tuple, h uint64, hint uint32) Result {
	tr.Stats.Lookups++
	idx, dir, ok := tr.Table.lookupHint(k, h, hint)
	if ok {
		c := tr.Table.Conn(idx)
		if tr.expired(c) {
			tr.expire(idx)
			ok = false
		}
	}
	if ok {
		tr.Stats.Hits++
		r, reopen := tr.update(p, idx, dir)
		if !reopen {
			return r
		}
		tr.delete(idx, EndClosed)
	}
	return tr.create(p, k, h)
}

// update handles a packet of an existing connection. reopen asks the caller
// to delete the entry and track the packet as a new connection.
func (tr *Tracker) update(p *packet.Parsed, idx uint32, dir Dir) (r Result, reopen bool) {
	c := tr.Table.Conn(idx)
	before := c.flags&(flagSeenReply|flagAssured) | uint8(c.TCP.State)<<4
	r = Result{Conn: idx, Dir: dir}
	timeout := tr.genMs
	switch p.Proto {
	case header.ProtoTCP:
		var seg tcpstate.Segment
		seg.Parse(p.L4())
		seg.PayloadLen += int(p.FragRest) // a datagram judged by its first fragment
		old := c.TCP.State
		tcb := tcpstate.Ref{Head: &c.TCP, Windows: &tr.Table.wins[idx]}
		res, reason := tcb.Update(&seg, uint8(dir), c.SeenReply(), c.Assured(), tr.cfg.TCP)
		switch res {
		case tcpstate.InvalidCrossed:
			tr.shrink(c)
			return tr.invalid(InvalidTCP + InvalidReason(reason)), false
		case tcpstate.Invalid:
			return tr.invalid(InvalidTCP + InvalidReason(reason)), false
		case tcpstate.Reopen:
			return r, true
		case tcpstate.Ignore:
			r.State = tr.stateOf(c, dir)
			return r, false
		}
		ns := c.TCP.State
		if ns != old {
			tr.Stats.TCPByState[old]--
			tr.Stats.TCPByState[ns]++
		}
		timeout = tr.tcpTimeout(tcb, p.TCPFlags)
		if !c.SeenReply() {
			if dir == Reply && p.TCPFlags&header.TCPFlagRst != 0 {
				// The only reply is a RST: the connection never existed
				// (netfilter deletes it at once). The RST itself passes.
				r.State = Established
				tr.delete(idx, EndClosed)
				return r, false
			}
			if ns == tcpstate.Established && timeout > tr.unackMs {
				timeout = tr.unackMs // picked up mid-stream, not confirmed
			}
		} else if !c.Assured() && (old == tcpstate.SynRecv || old == tcpstate.Established) && ns == tcpstate.Established {
			c.flags |= flagAssured
		}
		if c.flags&flagHelper != 0 && ns == tcpstate.Established {
			tr.helperDrop = false
			tr.helperPayload(idx, c, dir, p)
			r.HelperDrop = tr.helperDrop
		}
	case header.ProtoUDP:
		// As nf_conntrack_udp_packet: once a reply was seen (before this
		// packet), a flow still active 2 s after its first packet is a
		// stream: the long timeout, and assured. Until then, and for the
		// reply itself, the short one.
		timeout = tr.udpMs
		if c.SeenReply() && int32(tr.nowMs-c.streamAt()) > 0 {
			timeout = tr.streamMs
			c.flags |= flagAssured
		}
	case header.ProtoICMP, header.ProtoICMPv6:
		timeout = tr.icmpMs
	}
	if dir == Reply && c.flags&flagSeenReply == 0 {
		c.flags |= flagSeenReply
	}
	c.expires = tr.nowMs + timeout
	tr.Table.account(idx, dir, p.L3Len())
	if c.flags&(flagSeenReply|flagAssured)|uint8(c.TCP.State)<<4 != before {
		tr.event(EventUpdate, idx) // one per packet, as ctnetlink's event cache
	}
	r.State = tr.stateOf(c, dir)
	return r, false
}

// udpStreamMs is how long after its first packet a UDP flow that saw a
// reply must still be active to count as a stream (netfilter: 2 * HZ).
const udpStreamMs = 2000

// shrink shortens the timeout of an assured connection whose FINs or RSTs
// crossed out of window (tcpstate.InvalidCrossed) to the unacknowledged-data
// timeout, as nf_tcp_handle_invalid does: the two ends and the tracker are
// out of sync, so the entry should not hold on for days. As there, a
// connection with less than two minutes left, or less than that timeout,
// keeps its own.
func (tr *Tracker) shrink(c *Conn) {
	left := int32(c.expires - tr.nowMs)
	if left >= 120_000 && left > int32(tr.unackMs) {
		c.expires = tr.nowMs + tr.unackMs
	}
}

// stateOf is netfilter's ctinfo: replies and anything after a reply are
// ESTABLISHED; the original direction before a reply is NEW, or RELATED for
// an expected connection.
func (tr *Tracker) stateOf(c *Conn, dir Dir) State {
	switch {
	case dir == Reply || c.SeenReply():
		return Established
	case c.IsRelated():
		return Related
	}
	return New
}

func (tr *Tracker) tcpTimeout(tcb tcpstate.Ref, flags uint8) uint32 {
	t := tr.tcpMs[tcb.State]
	switch {
	case tcb.Retrans >= tcpMaxRetrans && t > tr.retransMs:
		return tr.retransMs
	case flags&header.TCPFlagRst != 0:
		return tr.tcpMs[tcpstate.Close]
	case tcb.Unacked() && t > tr.unackMs:
		return tr.unackMs
	case tcb.LastWindowZero() && t > tr.retransMs:
		return tr.retransMs
	}
	return t
}

// create tracks the first packet of a new connection.
func (tr *Tracker) create(p *packet.Parsed, k *Tuple, h uint64) Result {
	var tcb tcpstate.TCB
	var seg tcpstate.Segment
	timeout := tr.genMs
	switch p.Proto {
	case header.ProtoTCP:
		seg.Parse(p.L4())
		seg.PayloadLen += int(p.FragRest) // a datagram judged by its first fragment
		if ok, reason := tcb.Init(&seg, tr.cfg.TCP); !ok {
			return tr.invalid(InvalidTCP + InvalidReason(reason))
		}
		// Init only seeds the window data; the state moves with the
		// first Update, as in netfilter (tcp_new, then tcp_packet).
	case header.ProtoUDP:
		timeout = tr.udpMs
	case header.ProtoICMP, header.ProtoICMPv6:
		if !icmpRequest(p.Proto, p.ICMPType) {
			return tr.invalid(InvalidICMPNotRequest)
		}
		timeout = tr.icmpMs
	}
	if !tr.newAllowed() {
		return Result{Outcome: Outcome{Limited: true}}
	}
	idx, err := tr.Table.InsertHash(k, h)
	if err == ErrTableFull && tr.earlyDrop(h) {
		idx, err = tr.Table.InsertHash(k, h)
	}
	if err != nil {
		tr.Stats.TableFullDrops++
		return Result{Outcome: Outcome{Full: true}}
	}
	tr.Stats.Created++
	tr.Stats.ByProto[protoClass(k.Proto)]++
	c := tr.Table.Conn(idx)
	c.expires = tr.nowMs + timeout
	if p.Proto == header.ProtoUDP {
		c.setStreamAt(tr.nowMs + udpStreamMs)
	}
	state := New
	if len(tr.expects) > 0 && p.Proto == header.ProtoTCP {
		if m, ok := tr.expected(k); ok {
			c.flags |= flagRelated
			c.master = m + 1
			state = Related
		}
	}
	if p.Proto == header.ProtoTCP {
		tr.Stats.TCPByState[tcpstate.None]++
		c.TCP, tr.Table.wins[idx] = tcb.Head, tcb.Windows
		ref := tcpstate.Ref{Head: &c.TCP, Windows: &tr.Table.wins[idx]}
		res, reason := ref.Update(&seg, 0, false, false, tr.cfg.TCP)
		if res == tcpstate.Invalid {
			tr.delete(idx, EndForced)
			return tr.invalid(InvalidTCP + InvalidReason(reason))
		}
		tr.Stats.TCPByState[tcpstate.None]--
		tr.Stats.TCPByState[c.TCP.State]++
		c.expires = tr.nowMs + tr.tcpTimeout(ref, p.TCPFlags)
		if state == New && tr.helpers != nil && tr.isFTPPort(k.DstPort) {
			tr.attachHelper(idx, c)
		}
	}
	tr.Table.resetAcct(idx)
	tr.Table.stamp(idx, tr.now)
	tr.Table.account(idx, Original, p.L3Len())
	return Result{State: state, Conn: idx, Dir: Original, Outcome: Outcome{Events: Events{Created: true}}}
}

// untrackedICMPv6 reports whether an ICMPv6 type is link-local signalling
// that netfilter never tracks (noct_valid_new in nf_conntrack_proto_icmpv6.c:
// MLD query/report/done, router and neighbour solicitation/advertisement,
// redirect, MLDv2 report): such packets are UNTRACKED.
func untrackedICMPv6(typ uint8) bool {
	return (typ >= 130 && typ <= 137) || typ == 143
}

// icmpRequest reports whether an ICMP type may start a connection
// (netfilter's icmp_new / icmpv6_new: the request types).
func icmpRequest(proto, typ uint8) bool {
	if proto == header.ProtoICMP {
		switch typ {
		case header.ICMPv4Echo, header.ICMPv4Timestamp, header.ICMPv4InfoRequest, header.ICMPv4AddrMask:
			return true
		}
		return false
	}
	return typ == header.ICMPv6EchoRequest || typ == header.ICMPv6NodeInfoQry
}

// earlyDrop evicts one unassured (or closing TCP) connection among those
// sharing the candidate buckets of the key whose hash is h: the first one found, as netfilter's
// early_drop takes the first such entry of the bucket it scans. Taking the
// first (not the one closest to expiry) matters under a SYN flood, when the
// table is full of half-open entries: one or two entries are read instead
// of every entry of both buckets, each a cache miss. An expired entry met
// on the way (the sweep had not reached it) goes first, as an expiry, even
// if assured. It reports whether it freed one.
func (tr *Tracker) earlyDrop(h uint64) bool {
	victim, found, gone := uint32(0), false, false
	tr.Table.candidates(h, func(i uint32) bool {
		c := tr.Table.Conn(i)
		if tr.expired(c) {
			// Already over: the sweep had not reached it. It goes as
			// an expiry, not an early drop, whatever its state.
			victim, found, gone = i, true, true
			return false
		}
		if c.Assured() && !(c.Orig.Proto == header.ProtoTCP && c.TCP.CanEarlyDrop()) {
			return true
		}
		victim, found = i, true
		return false
	})
	switch {
	case gone:
		tr.expire(victim)
	case found:
		tr.delete(victim, EndEarlyDrop)
		tr.Stats.EarlyDrops++
	}
	return found
}

// delete removes an entry, for the reason why, and keeps the per-class
// counts.
func (tr *Tracker) delete(idx uint32, why EndReason) {
	tr.destroyed(idx, why)
	c := tr.Table.Conn(idx)
	tr.Stats.ByProto[protoClass(c.Orig.Proto)]--
	if c.Orig.Proto == header.ProtoTCP {
		tr.Stats.TCPByState[c.TCP.State]--
	}
	if c.flags&flagHelper != 0 {
		tr.detachHelper(idx, c)
	}
	tr.Table.Delete(idx)
}

// Delete removes connection idx (for flushes from the control side, served
// by the owning worker, and unconfirmed connections).
func (tr *Tracker) Delete(idx uint32) {
	if tr.Table.Conn(idx).flags&flagUsed != 0 {
		tr.delete(idx, EndForced)
	}
}

// trackICMPError gives an ICMP error the state of the connection its quoted
// packet belongs to: RELATED if tracked, INVALID otherwise. It never creates
// an entry: "do not create a new connection in response to an ICMP error"
// (an attacker could otherwise fill the table or open holes with forged
// errors).
func (tr *Tracker) trackICMPError(p *packet.Parsed, zone uint16) Result {
	q, ok := quotedTuple(p.Payload(), p.Kind == packet.IPv6, zone)
	// The error must travel back to the quoted packet's sender.
	if !ok || q.Src != p.Dst {
		return tr.invalid(InvalidICMPBadQuote)
	}
	tr.Stats.Lookups++
	idx, dir, found := tr.Table.Lookup(&q)
	if !found || tr.expired(tr.Table.Conn(idx)) {
		return tr.invalid(InvalidICMPUnknownFlow)
	}
	tr.Stats.Hits++
	return Result{State: Related, Conn: idx, Dir: dir}
}

// QuotedTuple returns the tuple of the packet an ICMP error quotes (its
// payload), in zone.
func QuotedTuple(payload []byte, v6 bool, zone uint16) (Tuple, bool) {
	return quotedTuple(payload, v6, zone)
}

// quotedTuple parses the IP header and first 8 bytes of L4 header quoted in
// an ICMP error (RFC 792, RFC 4443 §3) into the tuple of the packet that
// caused it.
func quotedTuple(b []byte, v6 bool, zone uint16) (Tuple, bool) {
	t := Tuple{Zone: zone}
	var proto uint8
	var l4 []byte
	if !v6 {
		if len(b) < header.IPv4MinSize || b[0]>>4 != 4 {
			return t, false
		}
		ip := header.IPv4(b)
		hl := ip.HeaderLen()
		if hl < header.IPv4MinSize || hl > len(b) || ip.FragOffset() != 0 {
			return t, false
		}
		t.Family = 4
		copy(t.Src[:4], ip.Src())
		copy(t.Dst[:4], ip.Dst())
		proto, l4 = ip.Protocol(), b[hl:]
	} else {
		if len(b) < header.IPv6Size || b[0]>>4 != 6 {
			return t, false
		}
		ip := header.IPv6(b)
		t.Family = 6
		copy(t.Src[:], ip.Src())
		copy(t.Dst[:], ip.Dst())
		proto, l4 = ip.NextHeader(), b[header.IPv6Size:]
		for i := 0; i < 8; i++ {
			if proto != header.ProtoHopOpts && proto != header.ProtoRouting && proto != header.ProtoDstOpts {
				break
			}
			if len(l4) < 8 {
				return t, false
			}
			n := (int(l4[1]) + 1) * 8
			if n > len(l4) {
				return t, false
			}
			proto, l4 = l4[0], l4[n:]
		}
	}
	t.Proto = proto
	switch proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP:
		if len(l4) < 4 {
			return t, false
		}
		t.SrcPort = uint16(l4[0])<<8 | uint16(l4[1])
		t.DstPort = uint16(l4[2])<<8 | uint16(l4[3])
	case header.ProtoICMP, header.ProtoICMPv6:
		if len(l4) < 8 || !icmpRequest(proto, l4[0]) && !isEchoReply(proto, l4[0]) {
			return t, false
		}
		id := uint16(l4[4])<<8 | uint16(l4[5])
		t.SrcPort, t.DstPort = id, icmpTypeCode(proto, l4[0], l4[1])
	}
	return t, true
}

func isEchoReply(proto, typ uint8) bool {
	if proto == header.ProtoICMP {
		return typ == header.ICMPv4EchoReply
	}
	return typ == header.ICMPv6EchoReply
}

// Reap scans up to budget entries from where the last call stopped and
// deletes the expired ones; it returns how many it deleted. Workers call it
// once per poll round, so expiry costs a bounded amount of work per round
// and needs no timers. When more than half of a scan expired, it scans again
// (up to 4× budget), catching up after a burst of short-lived flows.
func (tr *Tracker) Reap(budget int) int {
	if len(tr.expects) > 0 {
		tr.reapExpectations()
	}
	n := len(tr.Table.conns)
	if n == 0 || tr.Table.used == 0 {
		return 0
	}
	deleted := 0
	for round := 0; round < 4; round++ {
		found := 0
		for i := 0; i < budget; i++ {
			idx := tr.reapCursor
			tr.reapCursor++
			if int(tr.reapCursor) >= n {
				tr.reapCursor = 0
			}
			c := &tr.Table.conns[idx]
			if c.flags&flagUsed != 0 && tr.expired(c) {
				tr.expire(idx)
				found++
			}
		}
		deleted += found
		if found*2 <= budget {
			break
		}
	}
	return deleted
}
