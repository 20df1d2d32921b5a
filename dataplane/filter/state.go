package filter

import (
	"fmt"
	"math/rand/v2"
	"unsafe"

	"github.com/dpfw/dpfw/dataplane/rules"
)

// Active is an installed rule set: the compiled Filter, immutable and
// shared by every worker, and its State, the mutable part kept apart from
// it. Workers load it once per burst from an atomic pointer; the control
// side replaces it whole.
type Active struct {
	*Filter
	State *State
}

// State is a rule set's mutable part: every worker's rule counters and
// rate-limit buckets.
type State struct {
	workers []WorkerState
}

// WorkerState is one worker's counters and buckets. Only that worker
// writes them; counters are atomic so that the control side can read and
// zero them.
type WorkerState struct {
	counters []Counter
	limiters []*limiter // by limit index (Filter.limits)
}

// Install gives f a State for workers workers (at least 1). Rate limits
// with the same --hashlimit-name and parameters as one of prev's (nil at
// start-up) keep prev's buckets, as iptables keeps a named hashlimit's
// table across rule reloads; counters start at zero, as after
// iptables-restore without --counters. Only the control side calls it; it
// copies pointers from prev and never touches their contents.
func Install(f *Filter, workers int, prev *Active) *Active {
	s := &State{workers: make([]WorkerState, max(workers, 1))}
	seed := rand.Uint64()
	for w := range s.workers {
		ws := &s.workers[w]
		ws.counters = make([]Counter, f.NumDecisions())
		if len(f.limits) == 0 {
			continue
		}
		ws.limiters = make([]*limiter, len(f.limits))
		for i, l := range f.limits {
			if lm := prev.findLimiter(w, l); lm != nil {
				ws.limiters[i] = lm
				continue
			}
			ws.limiters[i] = newLimiter(l, seed)
		}
	}
	return &Active{Filter: f, State: s}
}

func (a *Active) findLimiter(w int, l *rules.RateLimit) *limiter {
	if a == nil || l.Name == "" || w >= len(a.State.workers) {
		return nil
	}
	for j, pl := range a.limits {
		if pl.Same(l) {
			return a.State.workers[w].limiters[j]
		}
	}
	return nil
}

// Workers returns how many workers the state is for.
func (s *State) Workers() int { return len(s.workers) }

// Worker returns worker w's part. Precondition: w < Workers().
func (s *State) Worker(w int) *WorkerState { return &s.workers[w] }

// Counters returns the worker's counters, one per decision id.
func (ws *WorkerState) Counters() []Counter { return ws.counters }

// Totals sums the counters of every worker for decision d.
func (s *State) Totals(d uint32) (packets, bytes uint64) {
	for w := range s.workers {
		packets += s.workers[w].counters[d].Packets.Load()
		bytes += s.workers[w].counters[d].Bytes.Load()
	}
	return packets, bytes
}

// ZeroCounters resets every counter (iptables -Z). Concurrent additions by
// workers may be lost or kept.
func (s *State) ZeroCounters() {
	for w := range s.workers {
		for d := range s.workers[w].counters {
			s.workers[w].counters[d].Packets.Store(0)
			s.workers[w].counters[d].Bytes.Store(0)
		}
	}
}

// LimitEvictions returns, per rate-limited rule id, how many buckets were
// reused before they refilled (the rule's table is too small).
func (a *Active) LimitEvictions() map[int]uint64 {
	out := map[int]uint64{}
	for w := range a.State.workers {
		for i, lm := range a.State.workers[w].limiters {
			out[int(a.limitRule[i])] += lm.evictions.Load()
		}
	}
	return out
}

// LimitBytes returns the memory of the rate-limit buckets that Install
// allocates for workers workers.
func (f *Filter) LimitBytes(workers int) int {
	n := 0
	for _, l := range f.limits {
		n += limiterSlots(l) * int(unsafe.Sizeof(limitSlot{}))
	}
	return n * max(workers, 1)
}

// KeepCounters copies prev's counters into a's for the decisions both
// have: a rule with the same chain and text (the n-th of its kind in the
// chain keeps the n-th's) and a chain's policy; a live edit keeps the
// counters of the rules it did not touch, as iptables -I/-D/-R do. What
// the workers add to prev's counters meanwhile is lost. Only the control
// side calls it, before a is installed.
func (a *Active) KeepCounters(prev *Active) {
	key := func(f *Filter, d int) string {
		if d >= len(f.Rules) {
			return "policy " + f.chains[d-len(f.Rules)].name
		}
		return f.Rules[d].Save()
	}
	ids := map[string][]int{}
	for d := 0; d < a.NumDecisions(); d++ {
		k := key(a.Filter, d)
		ids[k] = append(ids[k], d)
	}
	seen := map[string]int{}
	for d := 0; d < prev.NumDecisions(); d++ {
		k := key(prev.Filter, d)
		n := seen[k]
		seen[k]++
		if n >= len(ids[k]) {
			continue
		}
		to := ids[k][n]
		for w := range a.State.workers {
			if w >= len(prev.State.workers) {
				break
			}
			from := &prev.State.workers[w].counters[d]
			a.State.workers[w].counters[to].Packets.Store(from.Packets.Load())
			a.State.workers[w].counters[to].Bytes.Store(from.Bytes.Load())
		}
	}
}

// Zero resets the counters of rule num (1-based) of chain, or with num 0
// of all its rules and its policy, or with chain "" of everything
// (iptables -Z [CHAIN [N]]).
func (a *Active) Zero(chain string, num int) error {
	if chain == "" {
		a.State.ZeroCounters()
		return nil
	}
	ci := -1
	for i := range a.chains {
		if a.chains[i].name == chain {
			ci = i
		}
	}
	if ci < 0 {
		return fmt.Errorf("chain %q: no such chain", chain)
	}
	cc := &a.chains[ci]
	if num < 0 || num > cc.n {
		return fmt.Errorf("-Z %s %d: index of the rule out of range: want 1 to %d", chain, num, cc.n)
	}
	var ds []int
	if num > 0 {
		ds = []int{cc.first + num - 1}
	} else {
		for i := 0; i < cc.n; i++ {
			ds = append(ds, cc.first+i)
		}
		ds = append(ds, len(a.Rules)+ci)
	}
	for w := range a.State.workers {
		for _, d := range ds {
			a.State.workers[w].counters[d].Packets.Store(0)
			a.State.workers[w].counters[d].Bytes.Store(0)
		}
	}
	return nil
}
