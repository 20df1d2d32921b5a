package conntrack

import (
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// BatchSize is the most packets a Batch stages: a DPDK burst.
const BatchSize = 32

// Batch is one burst's lookups, staged so that their cache misses overlap
// instead of following one another (the table's prefetch steps: see
// prefetchBurst). It belongs to one worker and is reused burst after burst;
// it holds no pointers.
type Batch struct {
	keys   [BatchSize]Tuple
	hashes [BatchSize]uint64
	hints  [BatchSize]uint32
	staged [BatchSize]bool
}

// Between is the caller's own per-packet work for packets [g, e) of a
// batch (checksums, say), which Stage runs while their buckets load.
type Between interface{ Between(g, e int) }

// Stage stages the lookups of ps (at most BatchSize packets, on link zone):
// the packets tracked by their own tuple (IP, not a later fragment, not an
// ICMP error, not ICMPv6) whose owner is negative (owner[i] >= 0: another
// worker's packet). It hashes their keys and starts loading their buckets,
// then, a group of PrefetchGroup packets at a time, runs between for the
// group and starts loading the entries its buckets point to (and, for keys
// not in their first bucket, the second). TrackStaged then looks them up.
func (tr *Tracker) Stage(b *Batch, ps []packet.Parsed, owner []int8, zone uint16, between Between) {
	t := tr.Table
	n := min(len(ps), BatchSize)
	for g := 0; g < n; g += PrefetchGroup {
		e := min(g+PrefetchGroup, n)
		for i := g; i < e; i++ {
			p := &ps[i]
			b.staged[i], b.hashes[i] = false, 0
			if owner[i] >= 0 || !stageable(p) {
				continue // a hash of 0: its prefetches are harmless, its hint unused
			}
			b.hashes[i] = t.keyOf(p, zone, &b.keys[i])
			b.staged[i] = true
		}
		t.prefetchBuckets(b.hashes[g:e])
	}
	second := false
	for g := 0; g < n; g += PrefetchGroup {
		e := min(g+PrefetchGroup, n)
		between.Between(g, e)
		if t.prefetchEntries(b.keys[g:e], b.hashes[g:e], b.hints[g:e]) {
			second = true
		}
	}
	if second {
		t.prefetchSecond(b.keys[:n], b.hashes[:n], b.hints[:n])
	}
}

// stageable reports whether the tracker looks p up by its own tuple.
func stageable(p *packet.Parsed) bool {
	if !p.IsIP() || p.Frag == packet.FragLater || p.FragShort || p.Proto == header.ProtoICMPv6 {
		return false
	}
	return p.Proto != header.ProtoICMP || !packet.IsICMPError(p.Proto, p.ICMPType)
}

// TrackStaged is Track for packet i of a staged batch, p: the lookup
// starts from what Stage loaded. A packet Stage did not stage is tracked
// as Track would. i < BatchSize.
func (tr *Tracker) TrackStaged(b *Batch, i int, p *packet.Parsed, zone uint16) Result {
	if i &= BatchSize - 1; b.staged[i] {
		// Staged packets are never later fragments, ICMP errors or
		// ICMPv6 (stageable): straight to the lookup.
		return tr.track(p, &b.keys[i], b.hashes[i], b.hints[i])
	}
	return tr.trackUnstaged(p, zone)
}

// trackUnstaged is Track, kept out of line so that TrackStaged inlines.
//
//go:noinline
func (tr *Tracker) trackUnstaged(p *packet.Parsed, zone uint16) Result { return tr.Track(p, zone) }
