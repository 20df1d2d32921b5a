package dataplane

import (
	"sync/atomic"

	"github.com/dpfw/dpfw/conntrack"
)

// A Request asks a worker to list or delete connections. The control side
// posts it with Pipeline.Post and waits on Done; the worker serves it
// between bursts, a bounded number of entries per poll round, so a listing
// of a million connections never stalls the packet path.
type Request struct {
	// Flush deletes matching entries instead of listing them.
	Flush bool
	// Match selects entries (nil: all).
	Match func(*conntrack.Entry) bool
	// Max bounds how many entries a listing returns (0: no bound).
	Max int

	// Results, filled by the worker. Entries is preallocated by NewRequest
	// so that the worker never allocates; Truncated is set if it filled up.
	Entries   []conntrack.Entry
	Deleted   int
	Truncated bool

	cursor uint32
	done   chan struct{}
}

// NewRequest returns a request ready to post; a listing has room for
// capacity entries (the worker's published entry count plus a margin is a
// good choice).
func NewRequest(flush bool, match func(*conntrack.Entry) bool, maxEntries, capacity int) *Request {
	r := &Request{Flush: flush, Match: match, Max: maxEntries, done: make(chan struct{})}
	if !flush {
		if maxEntries > 0 {
			capacity = min(capacity, maxEntries)
		}
		r.Entries = make([]conntrack.Entry, 0, capacity)
	}
	return r
}

// Done is closed when the worker has served the request.
func (r *Request) Done() <-chan struct{} { return r.done }

// entriesPerRound bounds the table slots a worker examines per poll round
// for a control request: about 5 µs of work, so a listing of a large table
// costs the packet path a few percent while it runs (measured in
// perf/RESULTS.md), instead of stalling it.
const entriesPerRound = 256

// mailbox is a single-slot request queue between the control side and a
// worker.
type mailbox struct{ req atomic.Pointer[Request] }

// Post hands r to the worker. It reports false if another request is
// pending (the caller retries later).
func (pl *Pipeline) Post(r *Request) bool { return pl.mailbox.req.CompareAndSwap(nil, r) }

// ServeControl serves a pending control request for a bounded number of
// entries. Workers call it once per poll round; without a request it costs
// one atomic load. Listing allocates (it copies entries out); it runs
// between bursts, never inside one.
func (pl *Pipeline) ServeControl() {
	r := pl.mailbox.req.Load()
	if r == nil {
		return
	}
	tr := pl.Tracker
	n := uint32(tr.Table.Cap())
	end := min(r.cursor+entriesPerRound, n)
	for i := r.cursor; i < end; i++ {
		e, ok := tr.Entry(i)
		if !ok || (r.Match != nil && !r.Match(&e)) {
			continue
		}
		if r.Flush {
			tr.Delete(i)
			r.Deleted++
			continue
		}
		if len(r.Entries) == cap(r.Entries) {
			r.Truncated = len(r.Entries) < r.Max || r.Max == 0
			end = n
			break
		}
		r.Entries = append(r.Entries, e) // within the preallocated capacity: no allocation
	}
	r.cursor = end
	if end >= n {
		pl.mailbox.req.Store(nil)
		close(r.done)
	}
}
