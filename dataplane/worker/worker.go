package worker

import (
	"unsafe"

	"fmt"
	"golang.org/x/sys/unix"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/cgo/dpdk"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/reject"
	"github.com/dpfw/dpfw/internal/nocopy"
	"github.com/dpfw/dpfw/packet"
)

// Queue is one rx queue a worker polls and where its accepted frames go.
type Queue struct {
	RxPort  dpdk.Port
	RxQueue uint16
	// TxPort is the paired port; Routed is false when the rx port belongs to
	// no link (every frame is then dropped as no_route).
	TxPort  dpdk.Port
	TxQueue uint16
	Routed  bool
	// Ring, if set, is polled instead of the port's queue: packets of
	// RxPort that other workers steered to this one.
	Ring *dpdk.Ring
	// PortIndex is RxPort's index in the daemon's port list (for SteerRings).
	PortIndex int
}

// Config is one worker's set-up.
type Config struct {
	ID  int
	CPU int // -1: do not pin
	// Queues are polled round-robin.
	Queues []Queue
	// IdlePolls empty rounds in a row make the worker sleep IdleSleep before
	// polling again (0 disables: pure busy polling, the DPDK default); each
	// further idle round doubles the pause, up to IdleSleepMax, and a
	// packet resets it. The first packet after a quiet spell waits at most
	// IdleSleepMax; an idle worker polls IdlePolls times per IdleSleepMax.
	IdlePolls    int
	IdleSleep    time.Duration
	IdleSleepMax time.Duration
	// SteerRings[w][p] is worker w's ring for packets that entered port
	// index p (nil without steering).
	SteerRings [][]*dpdk.Ring
}

// publishEvery is how many bursts the worker counts before publishing its
// counters (it also publishes whenever a poll comes back empty).
const publishEvery = 16

// busyPollRounds bounds one Do when the worker never sleeps, so that it
// still checks its stop flag regularly.
const busyPollRounds = 64

// Worker is one polling lcore. It is owned by its goroutine: only Stop,
// Counters, Lcore and ID may be called from elsewhere.
type Worker struct {
	noCopy nocopy.NoCopy
	cfg    Config
	pl     *dataplane.Pipeline
	burst  dataplane.Burst
	// txBytes holds the staged frames' lengths, to count bytes actually sent.
	txBytes [dataplane.BurstSize]uint32
	rxLen   [dataplane.BurstSize]uint32
	// The mbufs of held fragments (dataplane.Burst.Held), by slot, with
	// their lengths and where they go when released.
	held    [dataplane.FragHeld]*dpdk.Mbuf
	heldLen [dataplane.FragHeld]uint32
	heldTo  [dataplane.FragHeld]dest
	// inBurst maps a slot held by the burst being settled to 1 + its index.
	inBurst [dataplane.FragHeld]uint8
	// The releases handed to the next Do: sent (not freed), and length.
	relTx  [dpdk.MaxHeld]bool
	relLen [dpdk.MaxHeld]uint32
	nrel   int
	// scratch holds a REJECT answer while it is built (it quotes the
	// rejected packet, so it cannot be built in place).
	scratch [2048]byte
	stop    atomic.Bool
	polling chan struct{} // closed when the worker polls its queues
	lcore   atomic.Int32
}

// dest is a port and tx queue.
type dest struct {
	port  dpdk.Port
	queue uint16
}

// The worker keeps every mbuf the pipeline holds, and IO takes every one
// released between two Do calls: the bounds must be one.
var (
	_ [dpdk.MaxHeld - dataplane.FragHeld]struct{}
	_ [dataplane.FragHeld - dpdk.MaxHeld]struct{}
)

// New returns a worker that runs pl over the configured queues.
func New(cfg Config, pl *dataplane.Pipeline) *Worker {
	w := &Worker{cfg: cfg, pl: pl, polling: make(chan struct{})}
	w.lcore.Store(-1)
	return w
}

// Counters returns the worker's published counters.
func (w *Worker) Counters() *dataplane.Counters { return w.pl.Counters() }

// Lcore returns the DPDK lcore id the worker registered as, or -1.
func (w *Worker) Lcore() int { return int(w.lcore.Load()) }

// ID returns the worker's index.
func (w *Worker) ID() int { return w.cfg.ID }

// Stop asks Run to return after its current burst.
func (w *Worker) Stop() { w.stop.Store(true) }

// Polling is closed once the worker has registered with DPDK and polls its
// queues (readiness).
func (w *Worker) Polling() <-chan struct{} { return w.polling }

// Run polls until Stop. It locks the goroutine to its OS thread, pins it and
// registers it with DPDK. A bug in the loop panics and crashes the process,
// as go-dpdk does: a worker that died silently would black-hole traffic.
func (w *Worker) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lcore, err := dpdk.RegisterThread(w.cfg.CPU)
	if err != nil {
		return fmt.Errorf("worker %d: registering with DPDK on cpu %d: %w", w.cfg.ID, w.cfg.CPU, err)
	}
	w.lcore.Store(int32(lcore))
	defer dpdk.UnregisterThread()
	io, err := dpdk.NewIO()
	if err != nil {
		return fmt.Errorf("worker %d: %w", w.cfg.ID, err)
	}
	defer io.Free()
	srcs := make([]dpdk.RxSource, len(w.cfg.Queues))
	for i, q := range w.cfg.Queues {
		srcs[i] = dpdk.RxSource{Port: q.RxPort, Queue: q.RxQueue, Ring: q.Ring}
	}
	rounds := busyPollRounds
	if w.cfg.IdlePolls > 0 {
		rounds = w.cfg.IdlePolls
	}
	if err := io.SetRxSources(srcs, uint32(rounds*len(srcs))); err != nil {
		return fmt.Errorf("worker %d: %w", w.cfg.ID, err)
	}
	close(w.polling)
	clk := dpdk.NewTSCClock()
	w.pl.Tracker.SetEpoch(time.Now())
	staged := w.loop(io, clk)
	// Send what the last burst staged (and count it), free the fragments
	// still held; receive nothing.
	w.pl.FlushFragments()
	w.takeReleases(io)
	_ = io.SetRxSources(nil, 1)
	w.doIO(io, staged)
	w.pl.Publish()
	return nil
}

// loop polls until Stop. Time comes from the TSC read inside the burst's C
// call (clk), not from a clock_gettime per burst. It returns how many
// frames the last burst staged for tx.
func (w *Worker) loop(io *dpdk.IO, clk dpdk.TSCClock) int {
	st := &w.pl.Stats
	staged := 0 // frames staged for tx by the previous burst
	sincePublish := 0
	last := int64(0)
	wasBusy := false
	pause := w.cfg.IdleSleep
	for !w.stop.Load() {
		w.doIO(io, staged)
		staged = 0
		rx := io.Rx()
		now := clk.Nanos(io.TSC())
		// One clock read per burst: the interval since the last read was
		// spent on the previous burst (busy) or on polling (idle).
		if wasBusy {
			st.BusyRound(now - last)
		} else {
			st.IdleNanos += uint64(now - last)
		}
		last = now
		if len(rx) == 0 {
			wasBusy = false
			w.pl.Idle(now)
			w.takeReleases(io)
			st.EmptyPolls = io.EmptyPolls()
			w.pl.Publish()
			sincePublish = 0
			if w.cfg.IdlePolls > 0 {
				sleepThread(pause)
				pause = min(2*pause, max(w.cfg.IdleSleepMax, w.cfg.IdleSleep))
			}
			continue
		}
		wasBusy, pause = true, w.cfg.IdleSleep
		staged = w.process(io, &w.cfg.Queues[io.RxIndex()], rx, now)
		if sincePublish++; sincePublish >= publishEvery {
			st.EmptyPolls = io.EmptyPolls()
			w.pl.Publish()
			sincePublish = 0
		}
	}
	return staged
}

// doIO makes the burst's one cgo call and accounts for what the previous
// burst staged for tx.
func (w *Worker) doIO(io *dpdk.IO, staged int) {
	io.Do()
	w.countReleases(io)
	st := &w.pl.Stats
	st.RejectsSent += uint64(io.RepliesSent())
	for o := range w.cfg.SteerRings {
		// What the owner's ring refused was dropped, not handed over:
		// Process counted it steered, so it moves to the drops.
		n := uint64(io.SteerRefused(o))
		st.Drops[filter.DropSteerFull] += n
		st.Steered -= n
	}
	if staged == 0 {
		return
	}
	sent := io.Sent()
	var bytes uint64
	for i := 0; i < sent && i < len(w.txBytes); i++ {
		bytes += uint64(w.txBytes[i])
	}
	st.TxPackets += uint64(sent)
	st.TxBytes += bytes
	st.Drops[filter.DropTxFull] += uint64(staged - sent)
}

// countReleases accounts for the held mbufs the last Do released.
func (w *Worker) countReleases(io *dpdk.IO) {
	st := &w.pl.Stats
	for k := 0; k < w.nrel; k++ {
		switch {
		case !w.relTx[k]:
		case io.ReleasedSent(k):
			st.TxPackets++
			st.TxBytes += uint64(w.relLen[k])
		default:
			st.Drops[filter.DropTxFull]++
		}
	}
	w.nrel = 0
}

// takeReleases hands the mbufs of the fragments the pipeline released
// outside a burst (timeouts while idle, shutdown) to the next Do.
func (w *Worker) takeReleases(io *dpdk.IO) {
	for _, r := range w.pl.Released() {
		w.release(io, r)
	}
}

// release hands one held mbuf to the next Do: to send or to free (its
// verdict is counted already).
func (w *Worker) release(io *dpdk.IO, r dataplane.Release) {
	m, to := w.held[r.Slot], w.heldTo[r.Slot]
	w.held[r.Slot] = nil
	ok := false
	if r.Accept {
		ok = io.Release(m, to.port, to.queue)
	} else {
		ok = io.ReleaseFree(m)
	}
	if !ok || m == nil {
		// The pipeline holds at most MaxHeld, each released once.
		panic(fmt.Sprintf("worker %d: release of held slot %d refused (mbuf %p)", w.cfg.ID, r.Slot, m))
	}
	w.relTx[w.nrel], w.relLen[w.nrel] = r.Accept, w.heldLen[r.Slot]
	w.nrel++
}

// process decodes and judges one burst, stages accepted frames for tx on the
// paired port and the rest for freeing. It returns how many were staged for tx.
func (w *Worker) process(io *dpdk.IO, q *Queue, rx []*dpdk.Mbuf, now int64) int {
	b := &w.burst
	n := min(len(rx), dataplane.BurstSize)
	b.N = n
	st := &w.pl.Stats
	var rxBytes uint64
	for i := 0; i < n; i++ {
		m := rx[i]
		l := m.PktLen()
		w.rxLen[i] = l
		rxBytes += uint64(l)
		if d := m.Data(); uint32(len(d)) == l {
			b.Decode(i, d, packet.CsumHint(m.OlFlags()))
		} else {
			b.DecodeChained(i)
		}
	}
	st.RxPackets += uint64(n)
	st.RxBytes += rxBytes
	st.Bursts++
	if !q.Routed {
		act := io.Actions()
		for i := 0; i < n; i++ {
			act[i] = dpdk.ActDrop
		}
		io.Commit(n)
		st.Drops[filter.DropNoRoute] += uint64(n)
		return 0
	}
	b.FromRing = q.Ring != nil
	w.pl.Process(b, uint16(q.RxPort), now)
	io.SetTx(q.TxPort, q.TxQueue)
	io.SetReply(q.RxPort, q.TxQueue)
	for o, rings := range w.cfg.SteerRings {
		io.SetSteerRing(o, rings[q.PortIndex])
	}
	w.settleHeld(io, b, n)
	act := io.Actions()
	staged := 0
	for i := 0; i < n; i++ {
		if b.Owner[i] >= 0 {
			act[i] = dpdk.ActSteer + uint8(b.Owner[i])
			continue
		}
		switch {
		case b.Held[i] != 0:
			act[i] = dpdk.ActHold
			s := b.Held[i] - 1
			w.held[s], w.heldLen[s], w.heldTo[s] = rx[i], w.rxLen[i], dest{q.TxPort, q.TxQueue}
		case b.Verdict[i] == filter.Accept:
			act[i] = dpdk.ActTx
			w.txBytes[staged] = w.rxLen[i]
			staged++
		case b.Answer[i] != 0 && w.answer(rx[i], &b.Parsed[i], reject.Kind(b.Answer[i]-1)):
			act[i] = dpdk.ActReply
		default:
			act[i] = dpdk.ActDrop
		}
	}
	io.Commit(n)
	return staged
}

// settleHeld hands the burst's releases on. A fragment held and released
// in this burst (its datagram completed in it) keeps its place: it is
// sent (or dropped) with the burst, as if never held. The others were held
// in earlier bursts: they go to the next Do, before the burst's own tx.
func (w *Worker) settleHeld(io *dpdk.IO, b *dataplane.Burst, n int) {
	rel := w.pl.Released()
	if len(rel) == 0 {
		return
	}
	for i := 0; i < n; i++ {
		if s := b.Held[i]; s != 0 && b.Owner[i] < 0 {
			w.inBurst[s-1] = uint8(i + 1)
		}
	}
	for _, r := range rel {
		k := w.inBurst[r.Slot]
		if k == 0 {
			w.release(io, r)
			continue
		}
		w.inBurst[r.Slot] = 0
		b.Held[k-1] = 0
		if r.Accept {
			b.Verdict[k-1], b.Reason[k-1] = filter.Accept, filter.DropNone
		} else {
			b.Verdict[k-1], b.Reason[k-1], b.Answer[k-1] = filter.Drop, r.Reason, 0
		}
	}
	for i := 0; i < n; i++ {
		if s := b.Held[i]; s != 0 {
			w.inBurst[s-1] = 0
		}
	}
}

// answer rewrites a rejected packet's mbuf into its REJECT answer and
// reports whether it did (single-segment mbufs with room only).
func (w *Worker) answer(m *dpdk.Mbuf, p *packet.Parsed, k reject.Kind) bool {
	if m.NbSegs() != 1 {
		return false
	}
	n := reject.Build(w.scratch[:], p, k)
	if n == 0 || n > m.Room() {
		return false
	}
	copy(m.DataRoom(), w.scratch[:n])
	m.SetLen(n)
	return true
}

// sleepThread sleeps the worker's own OS thread for d with nanosleep(2),
// outside the Go scheduler: no timer, no wake-up through another thread,
// and the P stays with the worker (RawSyscall: the runtime does not hand it
// to another thread meanwhile), so the wake-up comes on time however busy
// the machine, and waking costs no runtime work. A signal (the runtime's
// preemption) may end it early, which only shortens the idle pause.
func sleepThread(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}
