package dataplane

import (
	"math/rand/v2"
	"testing"
)

// refCover is the slow reference for fragCover: a byte map of which run
// owns each byte, with the kernel's rules (inet_frag_queue_insert and
// ip_frag_queue) written out directly.
type refCover struct {
	owner         []int // run index per byte, -1 if not seen
	start, stop   []uint32
	maxEnd, total uint32
	lastIn        bool
	dead, done    bool
}

func newRef() *refCover {
	r := &refCover{owner: make([]int, 1<<17)}
	for i := range r.owner {
		r.owner[i] = -1
	}
	return r
}

func (r *refCover) insert(off, end uint32, more bool) fragFate {
	if r.dead || r.done {
		return fragSpent
	}
	if end <= off {
		return fragBad
	}
	if !more {
		if end < r.maxEnd || (r.lastIn && end != r.total) {
			return fragBad
		}
		r.lastIn, r.total = true, end
	} else if r.lastIn && end > r.total {
		return fragBad
	}
	runs := map[int]bool{}
	seen := 0
	for b := off; b < end; b++ {
		if o := r.owner[b]; o >= 0 {
			runs[o] = true
			seen++
		}
	}
	switch {
	case seen == int(end-off) && len(runs) == 1:
		return fragDup
	case seen > 0:
		r.dead = true
		return fragOverlap
	}
	// New bytes: extend the run with the highest start if this one
	// starts where it ends, else start a run.
	tail := -1
	for i := range r.start {
		if tail < 0 || r.start[i] > r.start[tail] {
			tail = i
		}
	}
	id := len(r.start)
	switch {
	case tail >= 0 && off == r.stop[tail]:
		id = tail
		r.stop[tail] = end
	case id == fragRuns:
		r.dead = true
		return fragOverlap
	default:
		r.start, r.stop = append(r.start, off), append(r.stop, end)
	}
	for b := off; b < end; b++ {
		r.owner[b] = id
	}
	r.maxEnd = max(r.maxEnd, end)
	if r.lastIn {
		all := true
		for b := uint32(0); b < r.total; b++ {
			all = all && r.owner[b] >= 0
		}
		r.done = all
	}
	return fragNew
}

// TestFragCoverCases: the kernel's outcomes for the layouts that matter.
func TestFragCoverCases(t *testing.T) {
	type frag struct {
		off, end uint32
		more     bool
		want     fragFate
	}
	for _, c := range []struct {
		name  string
		frags []frag
	}{
		{"in order", []frag{{0, 1480, true, fragNew}, {1480, 2000, false, fragNew}, {1480, 2000, false, fragSpent}}},
		{"duplicate middle", []frag{{0, 1000, true, fragNew}, {1000, 2000, true, fragNew}, {1000, 2000, true, fragDup}, {2000, 3000, false, fragNew}}},
		{"duplicate inside a run", []frag{{0, 1000, true, fragNew}, {1000, 2000, true, fragNew}, {500, 1500, true, fragDup}}},
		{"overlap at the tail", []frag{{0, 1480, true, fragNew}, {1400, 2000, false, fragOverlap}, {1480, 2000, false, fragSpent}}},
		{"overlap across runs", []frag{{0, 800, true, fragNew}, {1600, 2400, true, fragNew}, {800, 1600, true, fragNew}, {400, 1200, true, fragOverlap}}},
		{"hole filled", []frag{{0, 800, true, fragNew}, {1600, 2400, false, fragNew}, {800, 1600, true, fragNew}, {0, 8, true, fragSpent}}},
		{"past the end", []frag{{0, 800, true, fragNew}, {1600, 2400, false, fragNew}, {2400, 3200, true, fragBad}, {1600, 2408, false, fragBad}, {800, 1600, true, fragNew}}},
		{"last before data seen", []frag{{0, 800, true, fragNew}, {1600, 2400, true, fragNew}, {800, 1200, false, fragBad}}},
		{"empty", []frag{{0, 800, true, fragNew}, {800, 800, true, fragBad}}},
	} {
		var fc fragCover
		ref := newRef()
		for i, f := range c.frags {
			got, want := fc.insert(f.off, f.end, f.more), ref.insert(f.off, f.end, f.more)
			if got != f.want || want != f.want {
				t.Errorf("%s: fragment %d [%d,%d): cover %d, reference %d; want %d", c.name, i, f.off, f.end, got, want, f.want)
			}
		}
	}
}

// TestFragCoverReference: random layouts, fragCover against the byte map.
func TestFragCoverReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		var fc fragCover
		ref := newRef()
		size := uint32(8 * (2 + rng.IntN(40)))
		for k := 0; k < 12; k++ {
			off := uint32(8 * rng.IntN(int(size/8)))
			end := min(size, off+uint32(8*(1+rng.IntN(8))))
			if rng.IntN(6) == 0 {
				off = 0 // a first fragment again
			}
			more := end < size || rng.IntN(4) == 0
			got, want := fc.insert(off, end, more), ref.insert(off, end, more)
			if got != want {
				t.Fatalf("layout %d, fragment %d [%d,%d) more=%v: cover %d, reference %d", iter, k, off, end, more, got, want)
			}
			if fc.settled != ref.done || fc.dead != ref.dead {
				t.Fatalf("layout %d, fragment %d: settled %v dead %v; reference %v %v", iter, k, fc.settled, fc.dead, ref.done, ref.dead)
			}
		}
	}
}

// TestFragCoverAnyOrder: a datagram of as many fragments as one may hold
// completes in any order, reversed or shuffled, as in the kernel.
func TestFragCoverAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 200; iter++ {
		order := rng.Perm(fragPerDatagram)
		if iter == 0 {
			for i := range order {
				order[i] = fragPerDatagram - 1 - i
			}
		}
		var fc fragCover
		for k, i := range order {
			f := fc.insert(uint32(8*i), uint32(8*i+8), i < fragPerDatagram-1)
			if f != fragNew {
				t.Fatalf("order %v: fragment %d (%d) gave %d", order, k, i, f)
			}
		}
		if !fc.settled {
			t.Fatalf("order %v: not complete", order)
		}
	}
}
