package conntrack

import "github.com/dpfw/dpfw/internal/ring"

// Connection events, as ctnetlink sends them (conntrack -E): NEW when a
// connection is confirmed (its first packet accepted), UPDATE when a packet
// changes its TCP state or makes it seen-reply or assured (one per packet),
// DESTROY when it goes (timeout, flush, early drop, a RST, reuse). A
// connection whose first packet was dropped was never confirmed and makes
// no event, as in netfilter.
//
// Each worker writes its events into its own ring, only while someone
// listens (Listen), and never waits: when the ring is full the event is
// counted as lost (Lost) instead. The control side drains the rings.

// EventType is NEW, UPDATE or DESTROY.
type EventType uint8

// Event types.
const (
	EventNew EventType = 1 << iota
	EventUpdate
	EventDestroy
)

var eventNames = map[EventType]string{EventNew: "NEW", EventUpdate: "UPDATE", EventDestroy: "DESTROY"}

func (t EventType) String() string { return eventNames[t] }

// Event is one connection event: the entry as it was then, and for a
// DESTROY, why it went.
type Event struct {
	Type   EventType
	Reason EndReason
	Entry  Entry
}

// EndReason says why a connection was destroyed.
type EndReason uint8

// End reasons.
const (
	// EndTimeout: it expired (idle, or its state's timeout after a close).
	EndTimeout EndReason = iota + 1
	// EndClosed: a packet ended it (a RST answering its first packet, a
	// new connection reusing its tuple).
	EndClosed
	// EndForced: it was flushed, or refused while being created.
	EndForced
	// EndEarlyDrop: it was evicted to make room for a new connection.
	EndEarlyDrop
)

var endNames = map[EndReason]string{EndTimeout: "timeout", EndClosed: "closed", EndForced: "forced", EndEarlyDrop: "early_drop"}

func (r EndReason) String() string { return endNames[r] }

// AppendText appends the event as conntrack -E prints it: the type in
// brackets, padded, then the entry, its counters only in a DESTROY (as
// ctnetlink sends them).
func (e *Event) AppendText(b []byte) []byte {
	name := "[" + e.Type.String() + "]"
	for i := len(name); i < 9; i++ {
		b = append(b, ' ')
	}
	b = append(b, name...)
	b = append(b, ' ')
	en := e.Entry
	en.HasAcct = en.HasAcct && e.Type == EventDestroy
	return en.AppendText(b)
}

// EventRingSize is each worker's ring: a burst of new connections at line
// rate fills it in a few milliseconds, which the control side drains every
// millisecond.
const EventRingSize = 4096

// EventRing is a worker's events: single producer (the worker), single
// consumer (the control side's pump).
type EventRing = ring.Ring[Event]

// Events returns the tracker's event ring.
func (tr *Tracker) Events() *EventRing { return tr.events }

// event writes an event for connection idx, if anyone listens and the
// connection is confirmed.
func (tr *Tracker) event(t EventType, idx uint32) { tr.eventWhy(t, 0, idx) }

// destroyed writes connection idx's DESTROY event.
func (tr *Tracker) destroyed(idx uint32, why EndReason) { tr.eventWhy(EventDestroy, why, idx) }

func (tr *Tracker) eventWhy(t EventType, why EndReason, idx uint32) {
	toSync, toEvents := tr.syncRing.On(), tr.events.On()
	if !toSync && !toEvents {
		return // nobody listens: two atomic loads, nothing else
	}
	c := tr.Table.Conn(idx)
	if c.flags&flagConfirmed == 0 {
		return
	}
	if toSync {
		tr.syncRecord(t, c)
	}
	if !toEvents {
		return
	}
	var ev Event
	ev.Type, ev.Reason = t, why
	ev.Entry, _ = tr.Entry(idx)
	if t == EventDestroy && tr.Table.start != nil {
		ev.Entry.End = tr.WallTime(tr.now)
	}
	tr.events.Put(&ev)
}

// Confirm marks connection idx confirmed: its first packet was accepted
// (the pipeline calls it). It sends the NEW event.
func (tr *Tracker) Confirm(idx uint32) {
	c := tr.Table.Conn(idx)
	if c.flags&flagUsed == 0 || c.flags&flagConfirmed != 0 {
		return
	}
	c.flags |= flagConfirmed
	tr.event(EventNew, idx)
}
