// Package rate is the token bucket dpfw's per-worker limiters share (the
// conntrack NEW cap, REJECT answers, LOG records): on the caller's clock in
// nanoseconds, owned by one goroutine, never allocating.
package rate

// Bucket allows Cost nanoseconds' worth of credit per event and holds at
// most Cap. It starts full. The zero Bucket never allows.
type Bucket struct {
	cost, cap    int64
	credit, last int64
	started      bool
}

// PerSecond is a bucket of perSecond events a second with room for burst
// at once (at least 1). perSecond <= 0 gives the zero Bucket.
func PerSecond(perSecond, burst int) Bucket {
	if perSecond <= 0 {
		return Bucket{}
	}
	cost := max(int64(1e9)/int64(perSecond), 1)
	return Bucket{cost: cost, cap: cost * int64(max(burst, 1))}
}

// Enabled reports whether the bucket was made with a rate.
func (b *Bucket) Enabled() bool { return b.cost > 0 }

// Allow takes one event's credit at time now (ns) if there is enough. A
// clock that goes back refills nothing.
func (b *Bucket) Allow(now int64) bool {
	if b.cost == 0 {
		return false
	}
	if !b.started {
		b.credit, b.started = b.cap, true
	} else {
		b.credit = Refill(b.credit, b.last, now, b.cap)
	}
	b.last = now
	if b.credit < b.cost {
		return false
	}
	b.credit -= b.cost
	return true
}

// Refill is the credit, at now, of a bucket that held credit at last and
// holds at most cap: the one refill rule of every bucket in dpfw (these,
// and the -m limit/-m hashlimit tables, which keep only credit and last
// per key). A clock that goes back refills nothing.
func Refill(credit, last, now, cap int64) int64 { return min(credit+max(now-last, 0), cap) }
