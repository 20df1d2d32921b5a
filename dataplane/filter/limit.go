package filter

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/dpfw/dpfw/packet"
)

// RateLimit is a -m limit or -m hashlimit match: a token bucket (one, or
// one per hashed key) that refills at Rate packets per Per and holds at most
// Burst packets. A rule with "upto" semantics matches while its bucket has a
// token (and takes it); with Above set it matches the packets over the rate
// (packets under the rate still take their token), as xt_hashlimit does.
//
// Buckets are per worker: each worker enforces the rate on the packets it
// handles. Steering and symmetric RSS send every packet of an address pair
// to one worker, so a per-source limit holds per worker; a source spreading
// its traffic over W workers' address pairs can reach W times the rate.
type RateLimit struct {
	// Hash is false for -m limit (one bucket) and true for -m hashlimit.
	Hash  bool
	Above bool
	// Rate packets per Per nanoseconds (Per: 1 s, 1 min, 1 h or 1 day).
	Rate  uint64
	Per   int64
	Burst uint32
	// Mode selects the key of each bucket (-m hashlimit): LimitSrcIP, …
	Mode LimitMode
	// SrcMask, DstMask are prefix lengths applied to the addresses of the
	// key (-1: the whole address).
	SrcMask, DstMask int
	// Name is --hashlimit-name: rule sets reloaded with the same name and
	// parameters keep the buckets.
	Name string
	// Size is the bucket table size per worker (--hashlimit-htable-size
	// or -max, rounded up to a power of two).
	Size int
}

// LimitMode is a set of --hashlimit-mode fields.
type LimitMode uint8

// Hashlimit key fields.
const (
	LimitSrcIP LimitMode = 1 << iota
	LimitDstIP
	LimitSrcPort
	LimitDstPort
)

var limitModeNames = []struct {
	name string
	bit  LimitMode
}{{"srcip", LimitSrcIP}, {"dstip", LimitDstIP}, {"srcport", LimitSrcPort}, {"dstport", LimitDstPort}}

func (m LimitMode) String() string {
	var out []string
	for _, n := range limitModeNames {
		if m&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// Default and maximum sizes of a hashlimit bucket table per worker.
const (
	DefaultLimitSize = 16384
	MaxLimitSize     = 1 << 22
)

// cost is the refill time of one token, in ns.
func (l *RateLimit) cost() int64 { return max(l.Per/int64(max(l.Rate, 1)), 1) }

func (l *RateLimit) same(o *RateLimit) bool { return *l == *o }

// rateString formats Rate/Per as iptables does (3/sec, 10/min).
func (l *RateLimit) rateString() string {
	unit := map[int64]string{1e9: "sec", 60e9: "min", 3600e9: "hour", 86400e9: "day"}[l.Per]
	return fmt.Sprintf("%d/%s", l.Rate, unit)
}

// String formats the match in iptables syntax.
func (l *RateLimit) String() string {
	if !l.Hash {
		return fmt.Sprintf("-m limit --limit %s --limit-burst %d", l.rateString(), l.Burst)
	}
	var b strings.Builder
	op := "upto"
	if l.Above {
		op = "above"
	}
	fmt.Fprintf(&b, "-m hashlimit --hashlimit-%s %s --hashlimit-burst %d", op, l.rateString(), l.Burst)
	if l.Mode != 0 {
		fmt.Fprintf(&b, " --hashlimit-mode %s", l.Mode)
	}
	if l.SrcMask >= 0 {
		fmt.Fprintf(&b, " --hashlimit-srcmask %d", l.SrcMask)
	}
	if l.DstMask >= 0 {
		fmt.Fprintf(&b, " --hashlimit-dstmask %d", l.DstMask)
	}
	if l.Size != DefaultLimitSize {
		fmt.Fprintf(&b, " --hashlimit-htable-size %d", l.Size)
	}
	fmt.Fprintf(&b, " --hashlimit-name %s", l.Name)
	return b.String()
}

// parseRate parses iptables' RATE: N[/second|/minute|/hour|/day], with the
// units abbreviated to any prefix (s, sec, m, min, …).
func parseRate(s string) (uint64, int64, error) {
	num, unit, hasUnit := strings.Cut(s, "/")
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("bad rate %q: want N/second, N/minute, N/hour or N/day with N ≥ 1, e.g. 10/sec", s)
	}
	per := int64(1e9)
	if hasUnit {
		switch {
		case unit != "" && strings.HasPrefix("second", unit):
			per = 1e9
		case unit != "" && strings.HasPrefix("minute", unit):
			per = 60e9
		case unit != "" && strings.HasPrefix("hour", unit):
			per = 3600e9
		case unit != "" && strings.HasPrefix("day", unit):
			per = 86400e9
		default:
			return 0, 0, fmt.Errorf("bad rate unit %q: want second, minute, hour or day (or s, min, h, d)", unit)
		}
	}
	if uint64(per)/n == 0 {
		return 0, 0, fmt.Errorf("rate %q is too high: at most 1000000000/second", s)
	}
	return n, per, nil
}

// limitSlot is one token bucket. key 0 is a free slot.
type limitSlot struct {
	key    uint64
	last   int64
	credit int64 // ns of refill time available
}

// limiter is one worker's buckets for one RateLimit. Only its worker
// touches it, so it needs no locks.
type limiter struct {
	spec  RateLimit
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

func newLimiter(l *RateLimit, seed uint64) *limiter {
	n := 1
	if l.Hash {
		for n < l.Size {
			n <<= 1
		}
	}
	sets := max(n/limitWays, 1)
	lm := &limiter{spec: *l, seed: seed, cost: l.cost(), slots: make([]limitSlot, sets*limitWays), mask: uint64(sets - 1)}
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
	if m&LimitSrcIP != 0 {
		maskInto(b[8:8+n], p.Src[:n], lm.spec.SrcMask)
	}
	if m&LimitDstIP != 0 {
		maskInto(b[24:24+n], p.Dst[:n], lm.spec.DstMask)
	}
	if m&LimitSrcPort != 0 {
		binary.LittleEndian.PutUint16(b[40:], p.SrcPort)
	}
	if m&LimitDstPort != 0 {
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
	return min(s.credit+max(now-s.last, 0), lm.cap)
}

// makeLimiters allocates every worker's buckets, keeping those of env.Prev
// whose rate limit has the same name and parameters (as iptables keeps a
// named hashlimit's table across rule reloads). Only the control side runs
// it; it copies pointers from Prev and never touches their contents.
func (f *Filter) makeLimiters(env Env) {
	if len(f.limits) == 0 {
		return
	}
	seed := rand.Uint64()
	f.limiters = make([][]*limiter, len(f.counters))
	for w := range f.limiters {
		f.limiters[w] = make([]*limiter, len(f.limits))
		for i, l := range f.limits {
			if prev := env.Prev.findLimiter(w, l); prev != nil {
				f.limiters[w][i] = prev
				continue
			}
			f.limiters[w][i] = newLimiter(l, seed)
		}
	}
}

func (f *Filter) findLimiter(w int, l *RateLimit) *limiter {
	if f == nil || l.Name == "" || w >= len(f.limiters) {
		return nil
	}
	for i, pl := range f.limits {
		if pl.same(l) {
			return f.limiters[w][i]
		}
	}
	return nil
}

// LimitEvictions returns, per rate-limited rule id, how many buckets were
// reused before they refilled (the rule's table is too small).
func (f *Filter) LimitEvictions() map[int]uint64 {
	out := map[int]uint64{}
	for w := range f.limiters {
		for i, lm := range f.limiters[w] {
			out[int(f.limitRule[i])] += lm.evictions.Load()
		}
	}
	return out
}

// LimitBytes returns the memory of every worker's rate-limit buckets.
func (f *Filter) LimitBytes() int {
	n := 0
	for w := range f.limiters {
		for _, lm := range f.limiters[w] {
			n += len(lm.slots) * int(unsafe.Sizeof(limitSlot{}))
		}
	}
	return n
}
