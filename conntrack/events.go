package conntrack

import (
	"sync/atomic"

	"github.com/dpfw/dpfw/internal/nocopy"
)

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

// Event is one connection event: the entry as it was then.
type Event struct {
	Type  EventType
	Entry Entry
}

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

// eventRingSize is each worker's ring: a burst of new connections at line
// rate fills it in a few milliseconds, which the control side drains every
// millisecond.
const eventRingSize = 4096

// EventRing is a worker's events: single producer (the worker), single
// consumer (the control side's pump).
type EventRing struct {
	noCopy nocopy.NoCopy
	// listeners > 0 turns the events on.
	listeners  atomic.Int32
	head, tail atomic.Uint64
	lost       atomic.Uint64
	buf        [eventRingSize]Event
}

// Listen turns the events on (on true) or off, counting listeners.
func (r *EventRing) Listen(on bool) {
	if on {
		r.listeners.Add(1)
	} else {
		r.listeners.Add(-1)
	}
}

// on reports whether events are wanted.
func (r *EventRing) on() bool { return r != nil && r.listeners.Load() > 0 }

// put adds an event, or counts it lost when the ring is full.
func (r *EventRing) put(e *Event) {
	h := r.head.Load()
	if h-r.tail.Load() >= eventRingSize {
		r.lost.Add(1)
		return
	}
	r.buf[h%eventRingSize] = *e
	r.head.Store(h + 1)
}

// Drain calls f with every event written since the last Drain, in order.
// Only one goroutine may drain a ring.
func (r *EventRing) Drain(f func(*Event)) int {
	t, h := r.tail.Load(), r.head.Load()
	for i := t; i < h; i++ {
		f(&r.buf[i%eventRingSize])
	}
	r.tail.Store(h)
	return int(h - t)
}

// Lost is how many events found the ring full.
func (r *EventRing) Lost() uint64 { return r.lost.Load() }

// Events returns the tracker's event ring.
func (tr *Tracker) Events() *EventRing { return tr.events }

// event writes an event for connection idx, if anyone listens and the
// connection is confirmed.
func (tr *Tracker) event(t EventType, idx uint32) {
	if !tr.events.on() || tr.Table.Conn(idx).flags&flagConfirmed == 0 {
		return
	}
	var ev Event
	ev.Type = t
	ev.Entry, _ = tr.Entry(idx)
	tr.events.put(&ev)
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
