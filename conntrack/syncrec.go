package conntrack

import (
	"time"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/internal/ring"
)

// State sync (conntrackd's protocol) needs less of a connection event than
// a listener of conntrack -E does: the tuple, the state, the status flags
// and the timeout. A worker writes each event it makes into a second ring
// as a SyncRecord, one cache line, while the sync listens: a third of the
// Event record's lines to write and to hand over to the CPU that drains
// it, and no copy of the entry's counters, id or times.

// SyncRecord is one connection event for state sync: 64 bytes.
type SyncRecord struct {
	Orig Tuple
	// ExpiresMs is the connection's time to live, in milliseconds, when
	// the event was made.
	ExpiresMs uint32
	Type      EventType
	TCPState  tcpstate.State
	// Flags holds SyncSeenReply, SyncAssured and SyncRelated.
	Flags uint8
	_     [17]byte
}

// SyncRecord flags.
const (
	SyncSeenReply = 1 << iota
	SyncAssured
	SyncRelated
)

// SyncRingSize is each worker's sync ring (1 MB): at a million events a
// second (some 110,000 new TCP connections) 16 ms of them, for a sync
// goroutine that drains it every millisecond on a shared CPU.
const SyncRingSize = 16384

// SyncRing is a worker's sync records: single producer (the worker),
// single consumer (the sync).
type SyncRing = ring.Ring[SyncRecord]

// SyncEvents returns the tracker's sync ring, nil unless Config.Sync.
func (tr *Tracker) SyncEvents() *SyncRing { return tr.syncRing }

// syncRecord writes connection idx's event t into the sync ring.
func (tr *Tracker) syncRecord(t EventType, c *Conn) {
	r := SyncRecord{Orig: c.Orig, Type: t, TCPState: c.TCP.State, ExpiresMs: uint32(max(int32(c.expires-tr.nowMs), 0))}
	if c.SeenReply() {
		r.Flags |= SyncSeenReply
	}
	if c.Assured() {
		r.Flags |= SyncAssured
	}
	if c.IsRelated() {
		r.Flags |= SyncRelated
	}
	tr.syncRing.Put(&r)
}

// Entry is the record as a connection entry (what the sync sends): no id,
// counters, times or master.
func (r *SyncRecord) Entry() Entry {
	return Entry{Orig: r.Orig, TCPState: r.TCPState, ExpiresIn: time.Duration(r.ExpiresMs) * time.Millisecond,
		SeenReply: r.Flags&SyncSeenReply != 0, Assured: r.Flags&SyncAssured != 0, Related: r.Flags&SyncRelated != 0, Master: -1}
}
