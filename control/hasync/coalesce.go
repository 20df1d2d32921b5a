package hasync

import (
	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/hasync/wire"
)

// Coalescer merges the events of one connection that come within one
// send interval into one message, since the peer needs only the latest
// state: NEW then UPDATEs is one NEW with the last state, UPDATEs are the
// last one, anything then DESTROY is the DESTROY, and a connection both
// created and destroyed within the interval is not sent at all. A short
// connection (a DNS query, an HTTP request) then costs the sync link
// nothing, and a long one a NEW, its state changes and its DESTROY.
// conntrackd sends every event; a conntrackd peer reads the merged
// stream as it would a burst of events of which it saw the last.
type Coalescer struct {
	pending map[conntrack.Tuple]int // index into order
	order   []pendingEvent
	// Merged counts events not sent as messages of their own.
	Merged uint64
}

type pendingEvent struct {
	t       wire.Type
	gone    bool // created and destroyed within the interval: send nothing
	created bool // the first event was a NEW
	r       conntrack.SyncRecord
}

// NewCoalescer returns an empty coalescer.
func NewCoalescer() *Coalescer {
	return &Coalescer{pending: map[conntrack.Tuple]int{}}
}

// Add takes one event, a worker's sync record.
func (c *Coalescer) Add(r *conntrack.SyncRecord) {
	t := MessageType(r.Type)
	i, ok := c.pending[r.Orig]
	if !ok {
		c.pending[r.Orig] = len(c.order)
		c.order = append(c.order, pendingEvent{t: t, r: *r, created: t == wire.CTNew})
		return
	}
	c.Merged++
	p := &c.order[i]
	switch {
	case t == wire.CTDelete && p.created:
		p.gone = true // the peer never heard of it
	case t == wire.CTNew && p.t == wire.CTDelete:
		p.t, p.gone = wire.CTNew, false // destroyed, then a new one on the tuple: the new one
	case t == wire.CTDelete:
		p.t = wire.CTDelete
	case p.t == wire.CTNew && t == wire.CTUpdate:
		// still a NEW for the peer, with the latest state
	default:
		p.t = t
	}
	if t == wire.CTNew && p.gone {
		p.gone = false
	}
	p.r = *r
}

// Flush offers the merged messages to n, in the order their connections
// first appeared, and empties the coalescer.
func (c *Coalescer) Flush(n *Node) {
	for i := range c.order {
		if p := &c.order[i]; !p.gone {
			e := p.r.Entry()
			n.OfferEntry(p.t, &e)
		}
	}
	clear(c.pending)
	c.order = c.order[:0]
}

// Len is how many connections wait.
func (c *Coalescer) Len() int { return len(c.order) }
