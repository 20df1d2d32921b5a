package rules

import (
	"fmt"
	"strconv"
	"strings"
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
// Cost is the tokens one packet takes, in nanoseconds of refill.
func (l *RateLimit) Cost() int64 { return max(l.Per/int64(max(l.Rate, 1)), 1) }

// Same reports whether o has the same parameters.
func (l *RateLimit) Same(o *RateLimit) bool { return *l == *o }

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
