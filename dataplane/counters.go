package dataplane

import (
	"sync/atomic"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane/filter"
	"golang.org/x/sys/cpu"
)

// Counter is a single-writer counter: the owning worker publishes, anyone reads.
type Counter struct{ v atomic.Uint64 }

// Load returns the current value.
func (c *Counter) Load() uint64 { return c.v.Load() }

// Counters are one worker's published statistics, read by the control side
// at scrape time. The worker counts into a plain Snapshot and publishes it
// (Publish) every few bursts and whenever it goes idle. Padded so two
// workers' counters never share a cache line.
type Counters struct {
	_ cpu.CacheLinePad

	RxPackets, RxBytes Counter
	TxPackets, TxBytes Counter
	Bursts             Counter // polls that returned packets
	EmptyPolls         Counter // polls that returned none
	BusyNanos          Counter // time spent on non-empty bursts
	IdleNanos          Counter // time spent on empty polls and idle sleeps
	Accepted, Rejected Counter
	Steered            Counter // packets handed to their owner worker
	RejectsSent        Counter // REJECT answers transmitted
	LogsSuppressed     Counter // LOG records lost to the rate limit or a full queue
	CacheHits          Counter // verdicts taken from the connection's cache
	Classified         Counter // packets that ran the rule set
	FragmentsHeld      Counter // gauge: fragments held for their datagram
	Drops              [filter.NumDropReasons]Counter

	// Connection tracking, published from the worker's tracker.
	CT CTCounters

	_ cpu.CacheLinePad
}

// Snapshot is a plain copy of Counters.
type Snapshot struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	Bursts, EmptyPolls                     uint64
	BusyNanos, IdleNanos                   uint64
	Accepted, Rejected                     uint64
	CacheHits, Classified                  uint64
	Steered, RejectsSent, LogsSuppressed   uint64
	// FragmentsHeld is a gauge: received, neither sent nor dropped yet.
	FragmentsHeld uint64
	Drops         [filter.NumDropReasons]uint64
}

// CTCounters are a worker's connection-tracking figures.
type CTCounters struct {
	Lookups, Hits, Created, Expired Counter
	EarlyDrops, TableFullDrops      Counter
	RateLimited, AdaptiveExpired    Counter
	InsertFailures, Kicks           Counter
	Entries, Capacity               Counter
	Invalid                         [conntrack.NumInvalidReasons]Counter
	ByProto                         [4]Counter
	TCPByState                      [tcpstate.NumStates]Counter
	// FTP helper.
	ExpectCreated, ExpectMatched, ExpectExpired Counter
	ExpectPending                               Counter
	ExpectRefused                               [conntrack.NumRefusals]Counter
	FTPMalformed, FTPLineTooLong                Counter
	EventsLost                                  Counter // connection events the ring had no room for
}

// publishCT copies the tracker's counters. Precondition: called by the
// tracker's owner.
func (c *Counters) publishCT(tr *conntrack.Tracker) {
	s, ct := &tr.Stats, &c.CT
	ct.Lookups.v.Store(s.Lookups)
	ct.Hits.v.Store(s.Hits)
	ct.Created.v.Store(s.Created)
	ct.Expired.v.Store(s.Expired)
	ct.EarlyDrops.v.Store(s.EarlyDrops)
	ct.TableFullDrops.v.Store(s.TableFullDrops)
	ct.RateLimited.v.Store(s.RateLimited)
	ct.AdaptiveExpired.v.Store(s.Adaptive)
	ct.InsertFailures.v.Store(tr.Table.Stats.InsertFailures)
	ct.Kicks.v.Store(tr.Table.Stats.Kicks)
	ct.Entries.v.Store(uint64(tr.Table.Len()))
	ct.Capacity.v.Store(uint64(tr.Table.Cap()))
	for i := range s.Invalid {
		ct.Invalid[i].v.Store(s.Invalid[i])
	}
	for i := range s.ByProto {
		ct.ByProto[i].v.Store(uint64(max(s.ByProto[i], 0)))
	}
	for i := range s.TCPByState {
		ct.TCPByState[i].v.Store(uint64(max(s.TCPByState[i], 0)))
	}
	f := &tr.FTP
	ct.ExpectCreated.v.Store(f.Created)
	ct.ExpectMatched.v.Store(f.Matched)
	ct.ExpectExpired.v.Store(f.Expired)
	ct.ExpectPending.v.Store(uint64(tr.PendingExpectations()))
	for i := range f.Refused {
		ct.ExpectRefused[i].v.Store(f.Refused[i])
	}
	ct.FTPMalformed.v.Store(f.Malformed)
	ct.FTPLineTooLong.v.Store(f.LineTooLong)
	ct.EventsLost.v.Store(tr.Events().Lost())
}

// Snapshot reads every counter. Counters are read one by one, so a snapshot
// taken while the worker runs is not a single instant.
func (c *Counters) Snapshot() Snapshot {
	s := Snapshot{
		RxPackets: c.RxPackets.Load(), RxBytes: c.RxBytes.Load(),
		TxPackets: c.TxPackets.Load(), TxBytes: c.TxBytes.Load(),
		Bursts: c.Bursts.Load(), EmptyPolls: c.EmptyPolls.Load(),
		BusyNanos: c.BusyNanos.Load(), IdleNanos: c.IdleNanos.Load(),
		Accepted: c.Accepted.Load(), Rejected: c.Rejected.Load(),
		CacheHits: c.CacheHits.Load(), Classified: c.Classified.Load(), Steered: c.Steered.Load(),
		RejectsSent: c.RejectsSent.Load(), LogsSuppressed: c.LogsSuppressed.Load(),
		FragmentsHeld: c.FragmentsHeld.Load(),
	}
	for i := range c.Drops {
		s.Drops[i] = c.Drops[i].Load()
	}
	return s
}

// Publish stores s into c. Precondition: called only by the owning worker.
// Workers count into a plain Snapshot on the packet path and publish it every
// few bursts, so the per-burst cost is plain additions.
func (c *Counters) Publish(s *Snapshot) {
	c.RxPackets.v.Store(s.RxPackets)
	c.RxBytes.v.Store(s.RxBytes)
	c.TxPackets.v.Store(s.TxPackets)
	c.TxBytes.v.Store(s.TxBytes)
	c.Bursts.v.Store(s.Bursts)
	c.EmptyPolls.v.Store(s.EmptyPolls)
	c.BusyNanos.v.Store(s.BusyNanos)
	c.IdleNanos.v.Store(s.IdleNanos)
	c.Accepted.v.Store(s.Accepted)
	c.Rejected.v.Store(s.Rejected)
	c.CacheHits.v.Store(s.CacheHits)
	c.Steered.v.Store(s.Steered)
	c.RejectsSent.v.Store(s.RejectsSent)
	c.LogsSuppressed.v.Store(s.LogsSuppressed)
	c.Classified.v.Store(s.Classified)
	c.FragmentsHeld.v.Store(s.FragmentsHeld)
	for i := range s.Drops {
		if c.Drops[i].v.Load() != s.Drops[i] {
			c.Drops[i].v.Store(s.Drops[i])
		}
	}
}

// TotalDrops sums the drops over all reasons.
func (s *Snapshot) TotalDrops() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// Add adds o into s (for totals across workers).
func (s *Snapshot) Add(o *Snapshot) {
	s.RxPackets += o.RxPackets
	s.RxBytes += o.RxBytes
	s.TxPackets += o.TxPackets
	s.TxBytes += o.TxBytes
	s.Bursts += o.Bursts
	s.EmptyPolls += o.EmptyPolls
	s.BusyNanos += o.BusyNanos
	s.IdleNanos += o.IdleNanos
	s.Accepted += o.Accepted
	s.Rejected += o.Rejected
	s.CacheHits += o.CacheHits
	s.Steered += o.Steered
	s.RejectsSent += o.RejectsSent
	s.LogsSuppressed += o.LogsSuppressed
	s.Classified += o.Classified
	s.FragmentsHeld += o.FragmentsHeld
	for i := range s.Drops {
		s.Drops[i] += o.Drops[i]
	}
}
