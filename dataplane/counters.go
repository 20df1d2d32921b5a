package dataplane

import (
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane/filter"
	"golang.org/x/sys/cpu"
)

// Snapshot is one worker's counters as plain numbers: what the worker
// counts into on the packet path (Pipeline.Stats) and what readers get.
// Each counter is defined here once, with its metric in its tags:
// stat:"NAME,KIND" (KIND counter, gauge, or seconds: a count of
// nanoseconds exported in seconds) and help:"…"; an array adds
// label:"LABEL=LIST", its index naming the label's value from the list
// control/metrics keeps under that name. The Prometheus collector and the
// published atomic copy (Counters) are derived from this declaration, so a
// new counter takes its field here and the code that counts it. A field
// without a stat tag is published but not exported. Every field is a
// 64-bit integer or an array of them (TestSnapshotWords).
type Snapshot struct {
	RxPackets  uint64 `stat:"rx_packets_total,counter" help:"Packets received by the worker."`
	RxBytes    uint64 `stat:"rx_bytes_total,counter" help:"Bytes received by the worker."`
	TxPackets  uint64 `stat:"tx_packets_total,counter" help:"Packets transmitted by the worker."`
	TxBytes    uint64 `stat:"tx_bytes_total,counter" help:"Bytes transmitted by the worker."`
	Bursts     uint64 `stat:"bursts_total,counter" help:"Polls that returned at least one packet."`
	EmptyPolls uint64 `stat:"empty_polls_total,counter" help:"Polls that returned no packet."`
	BusyNanos  uint64 `stat:"busy_seconds_total,seconds" help:"Time spent processing non-empty bursts."`
	IdleNanos  uint64 `stat:"idle_seconds_total,seconds" help:"Time spent on empty polls and idle sleeps."`
	Accepted   uint64
	Rejected   uint64
	CacheHits  uint64 `stat:"verdict_cache_hits_total,counter" help:"Packets whose verdict came from their connection's cache (no classification)."`
	Classified uint64 `stat:"classified_packets_total,counter" help:"Packets that ran the rule set."`
	Steered    uint64 `stat:"steered_packets_total,counter" help:"Packets handed to the worker owning their connection."`
	// RejectsSent counts REJECT answers transmitted, LogsSuppressed LOG
	// records lost.
	RejectsSent    uint64 `stat:"reject_answers_total,counter" help:"REJECT answers (TCP RST, ICMP unreachable) transmitted."`
	LogsSuppressed uint64 `stat:"log_suppressed_total,counter" help:"LOG records lost to the rate limit or a full queue."`
	// FragmentsHeld is a gauge: received, neither sent nor dropped yet.
	FragmentsHeld uint64                        `stat:"fragments_held,gauge" help:"Fragments held until their datagram is complete (at most 256 per worker)."`
	Drops         [filter.NumDropReasons]uint64 `stat:"dropped_packets_total,counter" help:"Packets dropped, by reason." label:"reason=drop"`
	// BusyRounds is a histogram of busy rounds by length (BusyRound):
	// bucket i counts rounds shorter than 2^(i+8) ns, the last the rest;
	// its sum is BusyNanos.
	BusyRounds [NumRoundBuckets]uint64 `stat:"busy_round_seconds,histogram" help:"Busy rounds by length: from the start of a burst's processing to the next burst's arrival (processing, transmit, the next poll), in seconds." sum:"BusyNanos"`
}

// NumRoundBuckets is the number of BusyRounds buckets: 256 ns to 4.2 ms in
// powers of two, then the rest.
const NumRoundBuckets = 16

// RoundBucketBound is the upper bound of BusyRounds bucket i (ns; the last
// has none).
func RoundBucketBound(i int) int64 { return 1 << (i + 8) }

// BusyRound counts one busy round of d ns.
func (s *Snapshot) BusyRound(d int64) {
	s.BusyNanos += uint64(d)
	s.BusyRounds[min(bits.Len64(uint64(d)>>8), NumRoundBuckets-1)]++
}

// CTSnapshot is a worker's connection-tracking counters: those the tracker,
// its table and its FTP helper count (defined, with their metric tags,
// where they are counted) and what they report when published.
type CTSnapshot struct {
	conntrack.Stats
	Table conntrack.TableStats
	FTP   conntrack.FTPStats
	// Entries is the table's fill, Capacity its size.
	Entries       uint64
	Capacity      uint64 `stat:"capacity,gauge" help:"Most connections the worker's table holds."`
	ExpectPending uint64 `stat:"expectations,gauge" help:"Expectations waiting for their connection."`
	EventsLost    uint64 `stat:"events_lost_total,counter" help:"Connection events lost because the worker's event ring was full (dpfw conntrack events fell behind)."`
}

// Counters are one worker's published statistics, read by the control side
// at scrape time. The worker counts into a plain Snapshot and publishes it
// (Publish) every few bursts and whenever it goes idle. Padded so two
// workers' counters never share a cache line.
type Counters struct {
	_     cpu.CacheLinePad
	words [snapshotWords]atomic.Uint64
	ct    [ctWords]atomic.Uint64
	_     cpu.CacheLinePad
}

const (
	snapshotWords = int(unsafe.Sizeof(Snapshot{}) / 8)
	ctWords       = int(unsafe.Sizeof(CTSnapshot{}) / 8)
)

// SnapshotWords and CTWords are the word counts the published copies
// assume (for the layout test).
const SnapshotWords, CTWords = snapshotWords, ctWords

// words and ctWordsOf view a snapshot as its 64-bit words.
func words(s *Snapshot) *[snapshotWords]uint64 { return (*[snapshotWords]uint64)(unsafe.Pointer(s)) }

func ctWordsOf(s *CTSnapshot) *[ctWords]uint64 { return (*[ctWords]uint64)(unsafe.Pointer(s)) }

// publish stores src into dst, skipping words that did not change (their
// cache line stays clean for readers).
func publish(dst []atomic.Uint64, src []uint64) {
	for i := range dst {
		if dst[i].Load() != src[i] {
			dst[i].Store(src[i])
		}
	}
}

func load(dst []uint64, src []atomic.Uint64) {
	for i := range src {
		dst[i] = src[i].Load()
	}
}

// Publish stores s into c. Precondition: called only by the owning worker.
// Workers count into a plain Snapshot on the packet path and publish it every
// few bursts, so the per-burst cost is plain additions.
func (c *Counters) Publish(s *Snapshot) {
	publish(c.words[:], words(s)[:])
}

// Snapshot reads every counter. Counters are read one by one, so a snapshot
// taken while the worker runs is not a single instant.
func (c *Counters) Snapshot() Snapshot {
	var s Snapshot
	load(words(&s)[:], c.words[:])
	return s
}

// CT reads the connection-tracking counters.
func (c *Counters) CT() CTSnapshot {
	var s CTSnapshot
	load(ctWordsOf(&s)[:], c.ct[:])
	return s
}

// publishCT copies the tracker's counters. Precondition: called by the
// tracker's owner.
func (c *Counters) publishCT(tr *conntrack.Tracker) {
	s := CTSnapshot{Stats: tr.Stats, Table: tr.Table.Stats, FTP: tr.FTP,
		Entries: uint64(tr.Table.Len()), Capacity: uint64(tr.Table.Cap()),
		ExpectPending: uint64(tr.PendingExpectations()), EventsLost: tr.Events().Lost()}
	publish(c.ct[:], ctWordsOf(&s)[:])
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
	a, b := words(s), words(o)
	for i := range a {
		a[i] += b[i]
	}
}
