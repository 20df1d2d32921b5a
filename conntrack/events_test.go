package conntrack_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
)

// TestEvents: nothing is written while nobody listens; a confirmed TCP
// connection's life is NEW, UPDATE per state change, DESTROY; an
// unconfirmed one makes no event; a full ring counts its losses.
func TestEvents(t *testing.T) {
	tr := newTracker(tcpstate.Options{Loose: true})
	ring := tr.Events()
	r := tr.Track(seg(t, cli, srv, 40000, 22, "S", 1000, 0, 64240, 0), 0)
	tr.Confirm(r.Conn)
	if n := ring.Drain(func(*conntrack.Event) {}); n != 0 {
		t.Fatalf("%d events with nobody listening", n)
	}
	tr.Delete(r.Conn)

	ring.Listen(true)
	defer ring.Listen(false)
	var got []string
	drain := func() {
		ring.Drain(func(e *conntrack.Event) {
			got = append(got, strings.Fields(string(e.AppendText(nil)))[0]+" "+e.Entry.TCPState.String())
		})
	}
	for i, p := range handshake(3)(t) {
		r := tr.Track(p, 0)
		if i == 0 {
			tr.Confirm(r.Conn)
		}
	}
	unconfirmed := tr.Track(seg(t, cli, srv, 40001, 23, "S", 1, 0, 100, 0), 0)
	tr.Delete(unconfirmed.Conn) // its first packet was dropped
	tr.SetNow(tr.Now() + int64(6*24*time.Hour))
	tr.Reap(1 << 20)
	drain()
	want := "[NEW] SYN_SENT,[UPDATE] SYN_RECV,[UPDATE] ESTABLISHED,[DESTROY] ESTABLISHED"
	if strings.Join(got, ",") != want {
		t.Errorf("events %q; want %q", strings.Join(got, ","), want)
	}
	// Fill the ring without draining: 5 rounds of 1,000 connections
	// opened and flushed are 10,000 events; past 4,096 they are lost, and
	// counted.
	for round := 0; round < 5; round++ {
		var idx []uint32
		for i := 0; i < 1000; i++ {
			r := tr.Track(udp(t, cli, srv, uint16(1000+i), 53), 0)
			tr.Confirm(r.Conn)
			idx = append(idx, r.Conn)
		}
		for _, i := range idx {
			tr.Delete(i)
		}
	}
	n := ring.Drain(func(*conntrack.Event) {})
	if n != 4096 || ring.Lost() != 10000-4096 {
		t.Errorf("drained %d, lost %d; want 4096 and %d", n, ring.Lost(), 10000-4096)
	}
}

// TestEventRingConcurrent: the worker writes while the control side
// drains (run under -race in make test): every event arrives once, in
// order, or is counted lost.
func TestEventRingConcurrent(t *testing.T) {
	r := conntrack.NewEventRing()
	r.Listen(true)
	const n = 200000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			r.Put(&conntrack.Event{Type: conntrack.EventNew, Entry: conntrack.Entry{ID: uint32(i)}})
		}
	}()
	got, last := 0, -1
	drain := func() {
		r.Drain(func(e *conntrack.Event) {
			if int(e.Entry.ID) <= last {
				t.Fatalf("event %d after %d", e.Entry.ID, last)
			}
			last = int(e.Entry.ID)
			got++
		})
	}
	for {
		select {
		case <-done:
			drain()
			if uint64(got)+r.Lost() != n {
				t.Fatalf("%d events drained + %d lost != %d", got, r.Lost(), n)
			}
			return
		default:
			drain()
		}
	}
}

// TestTimestamps: with Timestamps, an entry knows when it started (the
// tracker's clock read through its epoch), a listing prints its age as
// delta-time= as conntrack does with nf_conntrack_timestamp, and a DESTROY
// event carries the end, why, and its life as delta-time=; without,
// nothing of it.
func TestTimestamps(t *testing.T) {
	cfg := conntrack.Config{Capacity: 64, Timeouts: conntrack.DefaultTimeouts(), Seed: 1, Timestamps: true, Accounting: true}
	tr := conntrack.NewTracker(cfg)
	epoch := time.Date(2026, 12, 1, 12, 0, 0, 0, time.Local)
	tr.SetEpoch(epoch)
	tr.SetNow(int64(5 * time.Second))
	r := tr.Track(udp(t, cli, srv, 5000, 53), 0)
	tr.Confirm(r.Conn)
	e, _ := tr.Entry(r.Conn)
	if !e.Start.Equal(epoch.Add(5 * time.Second)) {
		t.Fatalf("start %v; want %v", e.Start, epoch.Add(5*time.Second))
	}
	tr.SetNow(int64(7 * time.Second))
	e, _ = tr.Entry(r.Conn)
	if line := e.String(); !strings.Contains(line, " delta-time=2 zone=0") {
		t.Errorf("listing 2 s after it started: %s", line)
	}
	tr.Events().Listen(true)
	tr.SetNow(int64(95 * time.Second)) // past the 30 s UDP timeout
	tr.Reap(64)
	var got []conntrack.Event
	tr.Events().Drain(func(ev *conntrack.Event) { got = append(got, *ev) })
	if len(got) != 1 || got[0].Type != conntrack.EventDestroy || got[0].Reason != conntrack.EndTimeout ||
		!got[0].Entry.End.Equal(epoch.Add(95*time.Second)) || !strings.Contains(string(got[0].AppendText(nil)), " delta-time=90 ") {
		t.Fatalf("DESTROY: %+v\n%s", got, got[0].AppendText(nil))
	}
	plain := conntrack.NewTracker(conntrack.Config{Capacity: 64, Timeouts: conntrack.DefaultTimeouts(), Seed: 1})
	r = plain.Track(udp(t, cli, srv, 5000, 53), 0)
	if e, _ := plain.Entry(r.Conn); !e.Start.IsZero() {
		t.Errorf("a start time without timestamps: %v", e.Start)
	}
}

// TestIDs: the same connection in the same slot of two workers' tables
// has two ids; a slot reused by another connection gets another id.
func TestIDs(t *testing.T) {
	id := func(worker int, sport uint16) uint32 {
		tr := conntrack.NewTracker(conntrack.Config{Capacity: 64, Timeouts: conntrack.DefaultTimeouts(), Seed: 1, Worker: worker})
		r := tr.Track(udp(t, cli, srv, sport, 53), 0)
		e, _ := tr.Entry(r.Conn)
		return e.ID
	}
	if id(0, 5000) == id(1, 5000) {
		t.Error("two workers give one connection in one slot the same id")
	}
	if id(0, 5000) == id(0, 5001) {
		t.Error("two connections in one slot share an id")
	}
	if id(0, 5000) != id(0, 5000) {
		t.Error("ids are not a function of worker, slot and tuple")
	}
}

// TestSyncRecords: with Config.Sync the same events go into the sync ring
// as one-cache-line records (tuple, state, flags, time to live), while
// the sync listens, and never when it does not; the events ring stays off
// unless someone listens to it; writing a record does not allocate.
func TestSyncRecords(t *testing.T) {
	if s := unsafe.Sizeof(conntrack.SyncRecord{}); s != 64 {
		t.Fatalf("a sync record is %d bytes; want 64 (one cache line)", s)
	}
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 1024, Timeouts: conntrack.DefaultTimeouts(), TCP: tcpstate.Options{Loose: true}, Seed: 7, Sync: true})
	tr.SetNow(int64(time.Hour))
	ring := tr.SyncEvents()
	if newTracker(tcpstate.Options{}).SyncEvents() != nil {
		t.Fatal("a tracker without Config.Sync has a sync ring")
	}
	r := tr.Track(seg(t, cli, srv, 40000, 22, "S", 1000, 0, 64240, 0), 0)
	tr.Confirm(r.Conn)
	tr.Delete(r.Conn)
	if n := ring.Drain(func(*conntrack.SyncRecord) {}); n != 0 {
		t.Fatalf("%d sync records with the sync not listening", n)
	}
	ring.Listen(true)
	defer ring.Listen(false)
	for i, p := range handshake(3)(t) {
		r := tr.Track(p, 0)
		if i == 0 {
			tr.Confirm(r.Conn)
		}
	}
	tr.SetNow(tr.Now() + int64(6*24*time.Hour))
	tr.Reap(1 << 20)
	var got []string
	ring.Drain(func(r *conntrack.SyncRecord) {
		e := r.Entry()
		got = append(got, fmt.Sprintf("%v %v reply=%v assured=%v ttl=%v", r.Type, e.TCPState, e.SeenReply, e.Assured, e.ExpiresIn))
	})
	want := []string{"NEW SYN_SENT reply=false assured=false ttl=2m0s", "UPDATE SYN_RECV reply=true assured=false ttl=1m0s",
		"UPDATE ESTABLISHED reply=true assured=true ttl=120h0m0s", "DESTROY ESTABLISHED reply=true assured=true ttl=0s"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("sync records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := tr.Events().Drain(func(*conntrack.Event) {}); n != 0 {
		t.Errorf("%d events in the events ring, which nobody listens to", n)
	}
	p := udp(t, cli, srv, 999, 53)
	if a := testing.AllocsPerRun(100, func() {
		r := tr.Track(p, 0)
		tr.Confirm(r.Conn)
		tr.Delete(r.Conn)
		ring.Drain(func(*conntrack.SyncRecord) {})
	}); a != 0 {
		t.Errorf("a connection's sync records allocate %v times", a)
	}
}
