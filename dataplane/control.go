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

	// Results, filled by the worker.
	Entries []conntrack.Entry
	Deleted int

	cursor uint32
	done   chan struct{}
}

// NewRequest returns a request ready to post.
func NewRequest(flush bool, match func(*conntrack.Entry) bool, maxEntries int) *Request {
	return &Request{Flush: flush, Match: match, Max: maxEntries, done: make(chan struct{})}
}

// Done is closed when the worker has served the request.
func (r *Request) Done() <-chan struct{} { return r.done }

// entriesPerRound bounds the entries a worker examines per poll round for a
// control request.
const entriesPerRound = 4096

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
		if r.Max > 0 && len(r.Entries) >= r.Max {
			end = n
			break
		}
		r.Entries = append(r.Entries, e) // escapes: the control side's copy
	}
	r.cursor = end
	if end >= n {
		pl.mailbox.req.Store(nil)
		close(r.done)
	}
}
