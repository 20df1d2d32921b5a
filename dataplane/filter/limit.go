package filter

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/internal/rate"
	"github.com/dpfw/dpfw/packet"
)

// limitSlot is one token bucket (internal/rate's refill rule, with the
// rate and cap kept once per limiter rather than per key). key 0 is a free
// slot.
type limitSlot struct {
	key    uint64
	last   int64
	credit int64 // ns of refill time available
}

// limiter is one worker's buckets for one RateLimit. Only its worker
// touches it, so it needs no locks.
type limiter struct {
	spec  rules.RateLimit
	seed  uint64
	cost  int64
	cap   int64
	slots []limitSlot // sets of limitWays slots
	mask  uint64      // number of sets - 1
	// evictions counts buckets reused before they refilled: the table
	// is too small for the number of active keys. Rare, so atomic.
	evictions atomic.Uint64
}

const limitWays = 4

// limiterSlots is the number of buckets of l's table: its size rounded up
// to a power of two, in sets of limitWays.
func limiterSlots(l *rules.RateLimit) int {
	n := 1
	if l.Hash {
		for n < l.Size {
			n <<= 1
		}
	}
	return max(n/limitWays, 1) * limitWays
}

func newLimiter(l *rules.RateLimit, seed uint64) *limiter {
	slots := limiterSlots(l)
	lm := &limiter{spec: *l, seed: seed, cost: l.Cost(), slots: make([]limitSlot, slots), mask: uint64(slots/limitWays - 1)}
	lm.cap = lm.cost * int64(max(l.Burst, 1))
	return lm
}

// key hashes the packet fields the mode selects.
func (lm *limiter) key(p *packet.Parsed) uint64 {
	if !lm.spec.Hash {
		return 1
	}
	var b [48]byte
	binary.LittleEndian.PutUint64(b[0:], lm.seed)
	m := lm.spec.Mode
	n := 4
	if p.Kind == packet.IPv6 {
		n = 16
		b[44] = 6
	}
	if m&rules.LimitSrcIP != 0 {
		maskInto(b[8:8+n], p.Src[:n], lm.spec.SrcMask)
	}
	if m&rules.LimitDstIP != 0 {
		maskInto(b[24:24+n], p.Dst[:n], lm.spec.DstMask)
	}
	if m&rules.LimitSrcPort != 0 {
		binary.LittleEndian.PutUint16(b[40:], p.SrcPort)
	}
	if m&rules.LimitDstPort != 0 {
		binary.LittleEndian.PutUint16(b[42:], p.DstPort)
	}
	b[45] = p.Proto
	k := xxhash.Sum64(b[:])
	if k == 0 {
		k = 1
	}
	return k
}

func maskInto(dst, src []byte, bits int) {
	copy(dst, src)
	if bits < 0 {
		return
	}
	for i := range dst {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			dst[i] &= byte(0xff << (8 - bits))
			bits = 0
		default:
			dst[i] = 0
		}
	}
}

// conform reports whether a packet of p fits the rate, taking a token if
// it does. A key without a bucket gets one: a free slot, or else the slot
// of its set with the most credit (a full bucket holds no information, so
// reusing it loses nothing; otherwise the reuse is counted).
func (lm *limiter) conform(p *packet.Parsed, now int64) bool {
	k := lm.key(p)
	set := lm.slots[(k&lm.mask)*limitWays : (k&lm.mask)*limitWays+limitWays]
	var s *limitSlot
	victim, best := 0, int64(-1)
	for i := range set {
		if set[i].key == k {
			s = &set[i]
			break
		}
		c := int64(1 << 62) // a free slot first
		if set[i].key != 0 {
			c = lm.credit(&set[i], now)
		}
		if c > best {
			victim, best = i, c
		}
	}
	if s == nil {
		s = &set[victim]
		if s.key != 0 && best < lm.cap {
			lm.evictions.Add(1)
		}
		*s = limitSlot{key: k, last: now, credit: lm.cap}
	}
	s.credit = lm.credit(s, now)
	s.last = now
	if s.credit < lm.cost {
		return false
	}
	s.credit -= lm.cost
	return true
}

func (lm *limiter) credit(s *limitSlot, now int64) int64 {
	return rate.Refill(s.credit, s.last, now, lm.cap)
}
