package dataplane

import (
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

// fragTable is owned by one worker.
type fragTable struct {
	slots [fragSlots]fragEntry
}

func keyOf(p *packet.Parsed, zone uint16) fragKey {
	return fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, v6: p.Kind == packet.IPv6, zone: zone}
}

func (k *fragKey) slot() int {
	h := uint32(k.id)*0x9e3779b1 ^ uint32(k.src[0])<<24 ^ uint32(k.src[3])<<16 ^ uint32(k.dst[3])<<8 ^ uint32(k.proto)
	h ^= uint32(k.src[15]) ^ uint32(k.dst[15])<<4
	return int(h % fragSlots)
}

// remember records the verdict of a datagram's first fragment.
func (ft *fragTable) remember(p *packet.Parsed, zone uint16, v filter.Verdict, st conntrack.State, now int64) {
	k := keyOf(p, zone)
	ft.slots[k.slot()] = fragEntry{key: k, expires: now + fragTimeout, verdict: v, state: st, used: true}
}

// follow returns the verdict a later fragment inherits, if its first
// fragment was seen.
func (ft *fragTable) follow(p *packet.Parsed, zone uint16, now int64) (filter.Verdict, conntrack.State, bool) {
	k := keyOf(p, zone)
	e := &ft.slots[k.slot()]
	if !e.used || e.key != k || e.expires < now {
		return filter.Drop, conntrack.Invalid, false
	}
	return e.verdict, e.state, true
}
