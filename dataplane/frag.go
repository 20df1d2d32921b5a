package dataplane

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/packet"
)

// Fragments are never a bypass: only a datagram's first fragment carries
// the L4 header the tracker and the rules need, so dpfw classifies the
// first fragment and makes every later fragment of the same datagram
// (addresses, protocol, IPv4 id or IPv6 fragment id, zone) follow its
// verdict. A later fragment whose first fragment was not seen (lost, or sent
// out of order) is dropped and counted (drop reason "fragment"), as are
// tiny and overlapping first-fragment layouts (packet.Decode, RFC 1858).
//
// Each datagram's byte ranges are kept as the kernel's defragmenter keeps
// them (inet_frag_queue_insert): as runs, a fragment that starts where the
// last run ends extending it. A fragment wholly inside one run is a
// duplicate, dropped alone ("fragment_duplicate"); one overlapping a run
// any other way is an overlap ("fragment_overlap", RFC 5722): it and every
// later fragment of the datagram are dropped, as the kernel discards the
// whole datagram. Once
// a datagram is complete, a further fragment of it is dropped ("fragment"):
// in the kernel it would start a datagram that never completes. An empty
// fragment, or one that reaches past the end the last fragment announced
// or moves it, is dropped alone ("fragment_overlap"), as ip_frag_queue
// drops it without discarding the datagram.
//
// Entries live fragTimeout (netfilter's ipfrag_time is 30 s) in a small
// fixed, per-worker, direct-mapped table; a collision replaces the older
// datagram, whose remaining fragments are then dropped. A datagram in more
// than fragRuns runs (holes filled out of order) is treated as an overlap:
// no sender fragments that way.
const (
	fragSlots   = 4096
	fragTimeout = int64(30e9)
	fragRuns    = 6
	// fragMaxDist is how many fragments this worker may see between two
	// copies of a datagram's first fragment for the second to count as a
	// duplicate; past it, the second starts a new datagram that reuses
	// the id (the role of the kernel's ipfrag_max_dist, 64 by default,
	// counted per worker instead of per source).
	fragMaxDist = 64
)

type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
	zone     uint16
}

type fragEntry struct {
	key     fragKey
	expires int64
	verdict filter.Verdict
	state   conntrack.State
	used    bool
	seq     uint64 // the table's seq when it last took a fragment
	runs    fragCover
}

// fragCover is the byte ranges of a datagram seen so far, as runs.
type fragCover struct {
	run [fragRuns][2]uint32 // [start, end) of each run, in arrival order
	n   uint8
	// last is the run with the highest start (the kernel's tail).
	last uint8
	// end is the datagram's length once its last fragment (MF clear) came.
	end     uint32
	lastIn  bool
	dead    bool // an overlap was seen: drop the rest
	settled bool // complete: [0, end) is covered
}

// fragFate is what inserting a fragment into a cover decided.
type fragFate uint8

const (
	fragNew     fragFate = iota // new bytes: the fragment follows its datagram
	fragDup                     // wholly inside a run: dropped alone
	fragOverlap                 // the datagram is dead
	fragBad                     // empty, or past the datagram's end: dropped alone
	fragSpent                   // the datagram was complete or dead already
)

// insert adds fragment [off, end) (more: MF set) to the cover.
func (c *fragCover) insert(off, end uint32, more bool) fragFate {
	if c.dead || c.settled {
		return fragSpent
	}
	if f := c.bounds(off, end, more); f != fragNew {
		return c.fate(f)
	}
	f := c.place(off, end)
	if f == fragNew && c.lastIn && c.covered() {
		c.settled = true
	}
	return c.fate(f)
}

// fate marks the cover dead on an overlap.
func (c *fragCover) fate(f fragFate) fragFate {
	if f == fragOverlap {
		c.dead = true
	}
	return f
}

// bounds checks the fragment against the datagram's end, as ip_frag_queue
// does: a last fragment may not end before bytes already seen or move the
// end; no fragment may reach past a known end; none may be empty.
func (c *fragCover) bounds(off, end uint32, more bool) fragFate {
	if end <= off {
		return fragBad
	}
	hi := uint32(0)
	if c.n > 0 {
		hi = c.run[c.last][1]
	}
	if !more {
		if end < hi || (c.lastIn && end != c.end) {
			return fragBad
		}
		c.lastIn, c.end = true, end
		return fragNew
	}
	if c.lastIn && end > c.end {
		return fragBad
	}
	return fragNew
}

// place inserts the fragment among the runs.
func (c *fragCover) place(off, end uint32) fragFate {
	if c.n == 0 {
		c.run[0], c.n, c.last = [2]uint32{off, end}, 1, 0
		return fragNew
	}
	tail := &c.run[c.last]
	if tail[1] < end {
		switch {
		case off < tail[1] && off >= tail[0]:
			return fragOverlap
		case off == tail[1]:
			tail[1] = end
			return fragNew
		case off > tail[1]:
			return c.add(off, end, true)
		}
		// off < tail start: spans the tail; fall through to the search.
	}
	for i := uint8(0); i < c.n; i++ {
		r := c.run[i]
		switch {
		case end <= r[0] || off >= r[1]:
		case off >= r[0] && end <= r[1]:
			return fragDup
		default:
			return fragOverlap
		}
	}
	return c.add(off, end, false)
}

// add starts a new run.
func (c *fragCover) add(off, end uint32, tail bool) fragFate {
	if int(c.n) == fragRuns {
		return fragOverlap
	}
	c.run[c.n] = [2]uint32{off, end}
	if tail {
		c.last = c.n
	}
	c.n++
	return fragNew
}

// covered reports whether the runs cover [0, end) with no hole.
func (c *fragCover) covered() bool {
	sum := uint32(0)
	for i := uint8(0); i < c.n; i++ {
		sum += c.run[i][1] - c.run[i][0]
	}
	return sum == c.end
}

// fragTable is owned by one worker. Its slots are chosen by a hash with a
// per-table random seed (set once, by NewPipeline), so that nobody can
// choose fragments that collide on purpose and push a datagram's verdict
// out of the table.
type fragTable struct {
	slots [fragSlots]fragEntry
	seed  uint64
	seq   uint64 // fragments seen
	d     xxhash.Digest
	buf   [40]byte
}

func keyOf(p *packet.Parsed, zone uint16) fragKey {
	return fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, v6: p.Kind == packet.IPv6, zone: zone}
}

// slot hashes the key with the table's seed. It does not allocate.
func (ft *fragTable) slot(k *fragKey) int {
	b := &ft.buf
	copy(b[0:16], k.src[:])
	copy(b[16:32], k.dst[:])
	binary.LittleEndian.PutUint32(b[32:], k.id)
	b[36], b[37] = k.proto, 0
	if k.v6 {
		b[37] = 1
	}
	binary.LittleEndian.PutUint16(b[38:], k.zone)
	ft.d.ResetWithSeed(ft.seed)
	_, _ = ft.d.Write(b[:])
	return int(ft.d.Sum64() % fragSlots)
}

// span is the fragment's bytes of its datagram's payload.
func span(p *packet.Parsed) (off, end uint32, more bool) {
	off = uint32(p.FragOff)
	end = off + uint32(p.L3End) - uint32(p.FragData)
	return off, end, p.Frag == packet.FragFirst || p.FragMore
}

// remember records the verdict of a datagram's first fragment. A first
// fragment of a datagram still live and incomplete, within fragMaxDist
// fragments of its last, is inserted like any other fragment: a duplicate
// or an overlap drops it (reason returned; DropNone if not). Otherwise it
// starts a new datagram.
func (ft *fragTable) remember(p *packet.Parsed, zone uint16, v filter.Verdict, st conntrack.State, now int64) filter.DropReason {
	k := keyOf(p, zone)
	e := &ft.slots[ft.slot(&k)]
	off, end, _ := span(p)
	ft.seq++
	if e.used && e.key == k && e.expires >= now && !e.runs.dead && !e.runs.settled && ft.seq-e.seq <= fragMaxDist {
		e.seq = ft.seq
		return fragDrop(e.runs.insert(off, end, true))
	}
	*e = fragEntry{key: k, expires: now + fragTimeout, verdict: v, state: st, used: true, seq: ft.seq}
	e.runs.insert(off, end, true)
	return filter.DropNone
}

// follow returns the verdict a later fragment inherits and the reason it
// is dropped (DropNone: it follows its first fragment's verdict).
func (ft *fragTable) follow(p *packet.Parsed, zone uint16, now int64) (filter.Verdict, conntrack.State, filter.DropReason) {
	k := keyOf(p, zone)
	e := &ft.slots[ft.slot(&k)]
	if !e.used || e.key != k || e.expires < now {
		return filter.Drop, conntrack.Invalid, filter.DropFragment
	}
	off, end, more := span(p)
	ft.seq++
	e.seq = ft.seq
	if r := fragDrop(e.runs.insert(off, end, more)); r != filter.DropNone {
		return filter.Drop, e.state, r
	}
	return e.verdict, e.state, filter.DropNone
}

// fragDrop is the drop reason of an insert's fate.
func fragDrop(f fragFate) filter.DropReason {
	switch f {
	case fragDup:
		return filter.DropFragmentDup
	case fragOverlap, fragBad:
		return filter.DropFragmentOverlap
	case fragSpent:
		return filter.DropFragment
	}
	return filter.DropNone
}
