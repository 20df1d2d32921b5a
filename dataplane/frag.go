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
// Entries live fragTimeout (netfilter's ipfrag_time is 30 s) in a small
// fixed, per-worker, direct-mapped table; a collision replaces the older
// datagram, whose remaining fragments are then dropped.
const (
	fragSlots   = 4096
	fragTimeout = int64(30e9)
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
}

// fragTable is owned by one worker. Its slots are chosen by a hash with a
// per-table random seed (set once, by NewPipeline), so that nobody can
// choose fragments that collide on purpose and push a datagram's verdict
// out of the table.
type fragTable struct {
	slots [fragSlots]fragEntry
	seed  uint64
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

// remember records the verdict of a datagram's first fragment.
func (ft *fragTable) remember(p *packet.Parsed, zone uint16, v filter.Verdict, st conntrack.State, now int64) {
	k := keyOf(p, zone)
	ft.slots[ft.slot(&k)] = fragEntry{key: k, expires: now + fragTimeout, verdict: v, state: st, used: true}
}

// follow returns the verdict a later fragment inherits, if its first
// fragment was seen.
func (ft *fragTable) follow(p *packet.Parsed, zone uint16, now int64) (filter.Verdict, conntrack.State, bool) {
	k := keyOf(p, zone)
	e := &ft.slots[ft.slot(&k)]
	if !e.used || e.key != k || e.expires < now {
		return filter.Drop, conntrack.Invalid, false
	}
	return e.verdict, e.state, true
}
