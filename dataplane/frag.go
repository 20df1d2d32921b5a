package dataplane

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Fragments are never a bypass, and a datagram is judged whole, as
// netfilter judges it after nf_defrag has reassembled it: dpfw holds each
// datagram's fragments (their mbufs, untouched) until the datagram is
// complete, then tracks and classifies it once, from its first fragment's
// headers and the datagram's length, and forwards or drops every fragment
// by that one verdict. A datagram that never completes forwards nothing:
// its fragments are freed after fragTimeout (netfilter's ipfrag_time, 30 s;
// reason "fragment_timeout").
//
// Each datagram's byte ranges are kept as the kernel's defragmenter keeps
// them (inet_frag_queue_insert): as runs, a fragment that starts where the
// last run ends extending it. A fragment wholly inside one run is a
// duplicate, dropped alone ("fragment_duplicate"); one overlapping a run
// any other way is an overlap ("fragment_overlap", RFC 5722): it, the
// fragments held and every later fragment of the datagram are dropped, as
// the kernel discards the whole datagram. Once a datagram is complete, a
// further fragment of it is dropped ("fragment"): in the kernel it would
// start a datagram that never completes. An empty fragment, or one that
// reaches past the end the last fragment announced or moves it, is dropped
// alone ("fragment_overlap"), as ip_frag_queue drops it without discarding
// the datagram. One past 65,535 bytes of datagram is dropped alone too,
// and its datagram never completes: the kernel instead discards the
// datagram once it is complete (ip_frag_reasm); either way nothing of it
// is forwarded (not checked against the kernel: such a datagram needs 64 KB
// of fragments).
//
// Memory is bounded per worker, as ipfrag_high_thresh bounds the kernel's:
// FragHeld mbufs held at most, fragPerDatagram of them for one datagram. A
// fragment that finds no room drops its datagram ("fragment_memory"), as
// does a datagram pushed out of the table by newer ones (fragWays entries
// per bucket, the least recently used goes), so that the room is never
// held by a datagram that cannot complete.
const (
	// fragSlots bounds the datagrams tracked: every incomplete one holds a
	// fragment, so at most FragHeld are live; the rest are finished ones,
	// kept to drop their stragglers, and reused first.
	fragSlots   = 1024
	fragWays    = 4
	fragTimeout = int64(30e9)
	// fragRuns is one run per fragment a datagram may hold: any arrival
	// order is kept exactly as the kernel keeps it.
	fragRuns = fragPerDatagram
	// fragMaxDist is how many fragments this worker may see between two
	// copies of a datagram's first fragment for the second to count as a
	// duplicate; past it, the second starts a new datagram that reuses
	// the id, and the fragments held for the old one are dropped
	// ("fragment"; the role of the kernel's ipfrag_max_dist, 64 by
	// default, counted per worker instead of per source).
	fragMaxDist = 64
	// FragHeld is the most fragments one worker holds while their
	// datagrams are incomplete (each an mbuf of the pool: the memory plan
	// counts them).
	FragHeld = 256
	// fragPerDatagram bounds one datagram's held fragments: 45 carry a
	// 64 KiB datagram at an MTU of 1,500.
	fragPerDatagram = 64
	// fragMaxLen bounds a datagram's payload after reassembly (the IPv4
	// total length field: 65,535 less a 20-byte header; ip_frag_reasm
	// refuses longer ones).
	fragMaxLen = 65535 - 20
	noSlot     = -1
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
	used    bool
	seq     uint64 // the table's seq when it last took a fragment
	runs    fragCover
	// sum is the one's-complement sum of the L4 bytes seen (when the
	// datagram's checksum is validated).
	sum uint64
	// The held fragments, chained through fragTable.next in arrival
	// order; first is the one at offset 0 (noSlot until it came).
	head, tail, first int16
	held              uint8
}

// fragCover is the byte ranges of a datagram seen so far, as runs.
type fragCover struct {
	run [fragRuns][2]uint16 // [start, end) of each run, in arrival order
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
	if end > 0xffff {
		return fragBad // past any datagram (callers bound it lower)
	}
	if f := c.bounds(off, end, more); f != fragNew {
		return c.fate(f)
	}
	f := c.place(uint16(off), uint16(end))
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
		hi = uint32(c.run[c.last][1])
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
func (c *fragCover) place(off, end uint16) fragFate {
	if c.n == 0 {
		c.run[0], c.n, c.last = [2]uint16{off, end}, 1, 0
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
func (c *fragCover) add(off, end uint16, tail bool) fragFate {
	if int(c.n) == fragRuns {
		return fragOverlap // more runs than a datagram may hold fragments
	}
	c.run[c.n] = [2]uint16{off, end}
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
		sum += uint32(c.run[i][1] - c.run[i][0])
	}
	return sum == c.end
}

// Release is a held fragment whose datagram was decided: the mbuf the
// worker keeps in held slot Slot is sent on if Accept, freed otherwise
// (counted under Reason).
type Release struct {
	Slot   uint16
	Accept bool
	Reason filter.DropReason
	// Decision is what decided the datagram (filter decision id), or
	// NoDecision; State its conntrack state (UNTRACKED if never judged).
	Decision uint32
	State    conntrack.State
}

// ownerNone marks a held slot that holds nothing.
const ownerNone = 0xffff

// fragTable is owned by one worker. Its buckets are chosen by a hash with
// a per-table random seed (set once, by NewPipeline), so that nobody can
// choose fragments that collide on purpose and push a datagram out of the
// table.
type fragTable struct {
	slots [fragSlots]fragEntry // fragWays entries per bucket
	seed  uint64
	seq   uint64 // fragments seen
	d     xxhash.Digest
	buf   [40]byte

	// The held fragments, by slot: the chain link, the entry holding the
	// slot (ownerNone: free) and, for a first fragment, its decode (whose
	// Buf points into the held mbuf).
	next  [FragHeld]int16
	owner [FragHeld]uint16
	first [FragHeld]packet.Parsed
	// Each held fragment's payload and its offset in the datagram, to
	// read a header that goes on past the first fragment (FragShort).
	data [FragHeld][]byte
	at   [FragHeld]uint32
	// head is where such a header is reassembled.
	head  [fragHeadMax]byte
	free  [FragHeld]int16
	nfree int
	// freed are the slots released since begin: the worker has yet to take
	// their mbufs, so they are reused only after the next begin.
	freed  [FragHeld]int16
	nfreed int
	rel    [FragHeld]Release
	nrel   int
	sweep  int       // the next held slot expire looks at
	st     *Snapshot // where released fragments are counted
}

// init empties the held store; released fragments are counted in st.
func (ft *fragTable) init(st *Snapshot) {
	ft.st = st
	for i := range ft.free {
		ft.free[i] = int16(FragHeld - 1 - i)
		ft.owner[i] = ownerNone
	}
	ft.nfree = FragHeld
}

// begin starts a burst: the worker has taken the last burst's releases, so
// their slots are free again.
func (ft *fragTable) begin() {
	for _, s := range ft.freed[:ft.nfreed] {
		ft.free[ft.nfree] = s
		ft.nfree++
	}
	ft.nfreed, ft.nrel = 0, 0
}

// held is how many fragments are held.
func (ft *fragTable) held() int { return FragHeld - ft.nfree - ft.nfreed }

func keyOf(p *packet.Parsed, zone uint16) fragKey {
	return fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, v6: p.Kind == packet.IPv6, zone: zone}
}

// slot hashes the key with the table's seed to its bucket. It does not
// allocate.
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
	return int(ft.d.Sum64() % (fragSlots / fragWays))
}

// span is the fragment's bytes of its datagram's payload.
func span(p *packet.Parsed) (off, end uint32, more bool) {
	off = uint32(p.FragOff)
	end = off + uint32(p.L3End) - uint32(p.FragData)
	return off, end, p.Frag == packet.FragFirst || p.FragMore
}

// lookup returns k's live entry, or an entry to start k's datagram in: a
// free one of the bucket, else an expired or finished one, else the least
// recently used, whose fragments are dropped ("fragment_memory").
func (ft *fragTable) lookup(k *fragKey, now int64) (idx int, found bool) {
	base := ft.slot(k) * fragWays
	victim, vrank := base, 4
	for w := base; w < base+fragWays; w++ {
		e := &ft.slots[w]
		if e.used && e.key == *k {
			if e.expires >= now {
				return w, true
			}
			ft.releaseAll(w, filter.Drop, filter.DropFragmentTimeout, NoDecision, conntrack.Untracked)
			return w, false
		}
		if r := rank(e, now); r < vrank || r == 3 && vrank == 3 && e.seq < ft.slots[victim].seq {
			victim, vrank = w, r
		}
	}
	switch vrank {
	case 1:
		ft.releaseAll(victim, filter.Drop, filter.DropFragmentTimeout, NoDecision, conntrack.Untracked)
	case 3:
		ft.releaseAll(victim, filter.Drop, filter.DropFragmentMemory, NoDecision, conntrack.Untracked)
	}
	return victim, false
}

// rank orders entries for reuse: free, expired, finished, live.
func rank(e *fragEntry, now int64) int {
	switch {
	case !e.used:
		return 0
	case e.expires < now:
		return 1
	case e.runs.dead || e.runs.settled:
		return 2
	}
	return 3
}

// join adds fragment p to its datagram. It returns the datagram's entry
// and why p is dropped (DropNone: p brought new bytes). A first fragment
// of a datagram still live and incomplete, within fragMaxDist fragments of
// its last, is inserted like any other fragment: a duplicate or an overlap
// drops it. Otherwise it starts a new datagram (the id was reused). An
// overlap drops the fragments held. With sum, p's L4 bytes are added to
// the datagram's checksum.
func (ft *fragTable) join(p *packet.Parsed, zone uint16, now int64, sum bool) (int, filter.DropReason) {
	k := keyOf(p, zone)
	idx, found := ft.lookup(&k, now)
	e := &ft.slots[idx]
	ft.seq++
	if found && p.Frag == packet.FragFirst && (e.runs.dead || e.runs.settled || ft.seq-e.seq > fragMaxDist) {
		ft.releaseAll(idx, filter.Drop, filter.DropFragment, NoDecision, conntrack.Untracked)
		found = false
	}
	if !found {
		*e = fragEntry{key: k, expires: now + fragTimeout, used: true, head: noSlot, tail: noSlot, first: noSlot}
	}
	e.seq = ft.seq
	off, end, more := span(p)
	limit := uint32(fragMaxLen)
	if k.v6 {
		limit = 65535 - 8 // the payload length less the fragment header
	}
	if end > limit {
		return idx, filter.DropFragmentOverlap
	}
	fate := e.runs.insert(off, end, more)
	switch {
	case fate == fragOverlap:
		ft.releaseAll(idx, filter.Drop, filter.DropFragmentOverlap, NoDecision, conntrack.Untracked)
	case fate == fragNew && sum:
		e.sum = header.AddWords(e.sum, header.SumWords(p.Buf[p.L4Off:p.L3End], 0))
	}
	return idx, fragDrop(fate)
}

// hold keeps fragment p (new bytes of entry idx) until its datagram is
// decided and returns the slot whose mbuf the worker must keep. Without
// room (FragHeld held, or fragPerDatagram for this datagram) the datagram
// is dropped instead ("fragment_memory").
func (ft *fragTable) hold(idx int, p *packet.Parsed) (int16, filter.DropReason) {
	e := &ft.slots[idx]
	if ft.nfree == 0 || e.held >= fragPerDatagram {
		ft.releaseAll(idx, filter.Drop, filter.DropFragmentMemory, NoDecision, conntrack.Untracked)
		e.runs.dead = true
		return noSlot, filter.DropFragmentMemory
	}
	ft.nfree--
	s := ft.free[ft.nfree]
	ft.next[s], ft.owner[s] = noSlot, uint16(idx)
	if e.tail == noSlot {
		e.head = s
	} else {
		ft.next[e.tail] = s
	}
	e.tail = s
	e.held++
	if p.Frag == packet.FragFirst {
		ft.first[s], e.first = *p, s
	}
	ft.data[s], ft.at[s] = p.Buf[p.FragData:p.L3End], uint32(p.FragOff)
	return s, filter.DropNone
}

// releaseAll decides entry idx's held fragments: each gets verdict v (and
// reason r, decision d, state st), is counted so, and goes on the release
// list.
func (ft *fragTable) releaseAll(idx int, v filter.Verdict, r filter.DropReason, d uint32, st conntrack.State) {
	e := &ft.slots[idx]
	for s := e.head; s != noSlot; s = ft.next[s] {
		ft.rel[ft.nrel] = Release{Slot: uint16(s), Accept: v == filter.Accept, Reason: r, Decision: d, State: st}
		ft.nrel++
		ft.freed[ft.nfreed] = s
		ft.nfreed++
		ft.owner[s] = ownerNone
		ft.st.count(v, r)
	}
	e.head, e.tail, e.first, e.held = noSlot, noSlot, noSlot, 0
}

// checksumOK reports whether complete entry idx, whose first fragment
// decodes as q, has the right L4 checksum.
func (ft *fragTable) checksumOK(idx int, q *packet.Parsed) bool {
	e := &ft.slots[idx]
	return packet.DatagramChecksumOK(q, e.sum, int(e.runs.end)-int(q.L4Off-q.FragData))
}

// datagram returns the decode to judge complete entry idx by: its first
// fragment's (cur itself, or the one held), as a copy that counts the
// bytes of the later fragments (packet.Parsed.FragRest). A first fragment
// that ends inside its L4 header has the header read from the datagram
// (reassembleHead); if even that fails, r says why the datagram drops.
func (ft *fragTable) datagram(idx int, cur *packet.Parsed) (q packet.Parsed, r filter.DropReason) {
	e := &ft.slots[idx]
	q = *cur
	if cur.Frag != packet.FragFirst {
		q = ft.first[e.first]
	}
	if q.FragShort {
		if r = ft.reassembleHead(idx, &q, cur); r != filter.DropNone {
			return q, r
		}
	}
	_, end, _ := span(&q)
	q.FragRest = uint16(e.runs.end - end)
	return q, filter.DropNone
}

// fragHeadMax bounds a reassembled header: link and IP headers (with
// options or extension headers) and the L4 header.
const fragHeadMax = 1024

// reassembleHead rebuilds first fragment q with its L4 header whole: the
// first fragment's link and IP headers, then the datagram's first bytes,
// gathered from the fragments held and cur, as far as the longest L4
// header reaches (60 bytes past the L4 offset) or the datagram ends, and
// decodes that (still a first fragment, its length fields patched) into q.
func (ft *fragTable) reassembleHead(idx int, q, cur *packet.Parsed) filter.DropReason {
	e := &ft.slots[idx]
	hl := int(q.FragData)
	need := min(int(e.runs.end), int(q.L4Off)-hl+60)
	if hl+need > len(ft.head) {
		return filter.DropTinyFragment
	}
	b := ft.head[:hl+need]
	copy(b, q.Buf[:hl])
	for s := e.head; s != noSlot; s = ft.next[s] {
		gather(b[hl:], ft.at[s], ft.data[s])
	}
	gather(b[hl:], uint32(cur.FragOff), cur.Buf[cur.FragData:cur.L3End])
	l3 := int(q.L3Off)
	if q.Kind == packet.IPv4 {
		binary.BigEndian.PutUint16(b[l3+2:], uint16(hl-l3+need))
	} else {
		binary.BigEndian.PutUint16(b[l3+4:], uint16(hl-l3-40+need))
	}
	packet.Decode(b, q)
	if q.Kind == packet.Malformed {
		return filter.DropReason(q.Reason)
	}
	if q.FragShort || q.Frag != packet.FragFirst {
		return filter.DropTinyFragment
	}
	return filter.DropNone
}

// gather copies the part of fragment data (at offset at of the datagram)
// that falls in dst, the datagram's first len(dst) bytes.
func gather(dst []byte, at uint32, data []byte) {
	if int(at) < len(dst) {
		copy(dst[at:], data)
	}
}

// expire drops the held fragments of datagrams past their timeout, looking
// at n held slots.
func (ft *fragTable) expire(now int64, n int) {
	if ft.nfree == FragHeld {
		return
	}
	for ; n > 0; n-- {
		s := ft.sweep
		ft.sweep = (ft.sweep + 1) % FragHeld
		if o := ft.owner[s]; o != ownerNone && ft.slots[o].expires < now {
			ft.releaseAll(int(o), filter.Drop, filter.DropFragmentTimeout, NoDecision, conntrack.Untracked)
			ft.slots[o].used = false
		}
	}
}

// flush drops every held fragment (reason shutdown).
func (ft *fragTable) flush() {
	ft.begin()
	for s := range ft.owner {
		if o := ft.owner[s]; o != ownerNone {
			ft.releaseAll(int(o), filter.Drop, filter.DropShutdown, NoDecision, conntrack.Untracked)
		}
	}
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
