package dataplane

import (
	"sync/atomic"

	"github.com/dpfw/dpfw/conntrack"
)

// A Request asks a worker to list or delete connections. The control side
// posts it with Pipeline.Post and waits on Done; the worker serves it
// between bursts, a bounded number of table slots per poll round, so a
// listing of a million connections never stalls the packet path.
//
// A listing stops when Entries is full and sets More; the caller takes the
// entries, calls Next and posts the request again to go on from where it
// stopped, so a listing of millions of connections needs one chunk of
// memory, not a copy of the table.
type Request struct {
	// Flush deletes matching entries instead of listing them.
	Flush bool
	// Expect lists the FTP helper's pending expectations (into
	// Expectations) instead of connections.
	Expect       bool
	Expectations []conntrack.Expectation
	// Match selects entries (nil: all).
	Match func(*conntrack.Entry) bool
	// Inject installs these connections (from the HA peer) instead;
	// Injected counts those installed, InjectFailed those refused (table
	// full, no TCP state).
	Inject       []conntrack.Entry
	InjectExpect []conntrack.Expectation
	Injected     int
	InjectFailed int

	// Results, filled by the worker. Entries is preallocated by NewRequest
	// so that the worker never allocates.
	Entries []conntrack.Entry
	Deleted int
	More    bool

	cursor uint32
	done   chan struct{}
}

// NewRequest returns a request ready to post; a listing hands over up to
// chunk entries at a time.
func NewRequest(flush bool, match func(*conntrack.Entry) bool, chunk int) *Request {
	r := &Request{Flush: flush, Match: match, done: make(chan struct{})}
	if !flush {
		r.Entries = make([]conntrack.Entry, 0, max(chunk, 1))
	}
	return r
}

// NewInjectRequest returns a request that installs es into the worker's
// table (conntrack.Tracker.Inject), then xs (Tracker.InjectExpect).
func NewInjectRequest(es []conntrack.Entry, xs []conntrack.Expectation) *Request {
	if es == nil {
		es = []conntrack.Entry{}
	}
	return &Request{Inject: es, InjectExpect: xs, done: make(chan struct{})}
}

// NewExpectRequest returns a request for up to n pending expectations.
func NewExpectRequest(n int) *Request {
	return &Request{Expect: true, Expectations: make([]conntrack.Expectation, 0, max(n, 1)), done: make(chan struct{})}
}

// Done is closed when the worker has served the request (or a chunk).
func (r *Request) Done() <-chan struct{} { return r.done }

// Next readies a request whose Done was closed with More set to be posted
// again: it empties Entries and renews Done.
func (r *Request) Next() {
	r.Entries, r.More = r.Entries[:0], false
	r.done = make(chan struct{})
}

// entriesPerRound bounds the table slots a busy worker examines per step
// of a control request (a few µs of work), and it takes a step at most
// every busyServeEvery of its clock, so a listing costs the packet path a
// few percent however often it is asked for (a 2 M-slot table takes about
// 3 s). An idle worker examines entriesPerIdle slots per empty poll round.
const (
	entriesPerRound = 64
	entriesPerIdle  = 8192
	busyServeEvery  = int64(100e3) // ns
)

// mailbox is a single-slot request queue between the control side and a
// worker.
type mailbox struct{ req atomic.Pointer[Request] }

// Post hands r to the worker. It reports false if another request is
// pending (the caller retries later).
func (pl *Pipeline) Post(r *Request) bool { return pl.mailbox.req.CompareAndSwap(nil, r) }

// serveControl serves a pending control request for a bounded number of
// entries, paced on a busy worker (see busyServeEvery). Workers call it
// once per poll round; without a request it costs one atomic load. It runs
// between bursts, never inside one, and never allocates (entries go into
// the request's preallocated slice).
func (pl *Pipeline) serveControl(busy bool) {
	r := pl.mailbox.req.Load()
	if r == nil {
		return
	}
	if busy {
		if pl.now-pl.lastServe < busyServeEvery {
			return
		}
		pl.lastServe = pl.now
	}
	tr := pl.Tracker
	if r.Expect {
		r.Expectations, _ = tr.AppendExpectations(r.Expectations[:0])
		pl.finish(r)
		return
	}
	step := uint32(entriesPerIdle)
	if busy {
		step = entriesPerRound
	}
	if r.Inject != nil {
		pl.serveInject(r, step)
		return
	}
	n := uint32(tr.Table.Cap())
	end := min(r.cursor+step, n)
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
			r.More, end = true, i
			break
		}
		r.Entries = append(r.Entries, e) // within the preallocated capacity: no allocation
	}
	r.cursor = end
	if end >= n || r.More {
		pl.finish(r)
	}
}

// serveInject installs up to step of an Inject request's connections.
func (pl *Pipeline) serveInject(r *Request, step uint32) {
	end := min(r.cursor+step, uint32(len(r.Inject)))
	for i := r.cursor; i < end; i++ {
		if _, err := pl.Tracker.Inject(&r.Inject[i]); err != nil {
			r.InjectFailed++
		} else {
			r.Injected++
		}
	}
	r.cursor = end
	if end < uint32(len(r.Inject)) {
		return
	}
	for i := range r.InjectExpect { // few: at most conntrack.ftp.max_expectations
		if pl.Tracker.InjectExpect(&r.InjectExpect[i]) != nil {
			r.InjectFailed++
		} else {
			r.Injected++
		}
	}
	pl.finish(r)
}

// finish hands a served request back.
func (pl *Pipeline) finish(r *Request) {
	pl.mailbox.req.Store(nil)
	close(r.done)
}

// Owner is the worker that owns connections of tuple t, or -1 when any
// may see them (several workers without steering: the NIC's RSS picks).
func (pl *Pipeline) Owner(t *conntrack.Tuple) int {
	switch {
	case pl.opts.Workers <= 1:
		return 0
	case pl.opts.Steer:
		return int(conntrack.PairHash(pl.opts.SteerSeed, t) % uint64(pl.opts.Workers))
	}
	return -1
}
