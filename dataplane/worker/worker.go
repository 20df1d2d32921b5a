package worker

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/cgo/dpdk"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
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
}

// Config is one worker's set-up.
type Config struct {
	ID  int
	CPU int // -1: do not pin
	// Queues are polled round-robin, one burst each.
	Queues []Queue
	// IdlePolls empty rounds in a row make the worker sleep IdleSleep before
	// polling again (0 disables: pure busy polling, the DPDK default).
	IdlePolls int
	IdleSleep time.Duration
}

// Worker is one polling lcore. It is owned by its goroutine: only Stop and
// Counters may be called from elsewhere.
type Worker struct {
	noCopy noCopy
	cfg    Config
	pl     *dataplane.Pipeline
	burst  dataplane.Burst
	// txBytes holds the staged frames' lengths, to count bytes actually sent.
	txBytes [dataplane.BurstSize]uint32
	stop    atomic.Bool
	lcore   atomic.Int32
}

// New returns a worker that runs pl over the configured queues.
func New(cfg Config, pl *dataplane.Pipeline) *Worker {
	w := &Worker{cfg: cfg, pl: pl}
	w.lcore.Store(-1)
	return w
}

// Counters returns the worker's counters.
func (w *Worker) Counters() *dataplane.Counters { return w.pl.Counters() }

// Lcore returns the DPDK lcore id the worker registered as, or -1.
func (w *Worker) Lcore() int { return int(w.lcore.Load()) }

// ID returns the worker's index.
func (w *Worker) ID() int { return w.cfg.ID }

// Stop asks Run to return after its current round.
func (w *Worker) Stop() { w.stop.Store(true) }

// epoch anchors the monotonic clock the data plane uses.
var epoch = time.Now()

func monoNow() int64 { return int64(time.Since(epoch)) }

// Run polls until Stop. It locks the goroutine to its OS thread, pins it and
// registers it with DPDK; it panics (crashing the process) on a bug in the
// loop, as go-dpdk does: a worker that dies silently would black-hole traffic.
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
	w.loop(io)
	// Send what the last round staged; receive nothing.
	io.SetRx(dpdk.NoPort, 0)
	io.SetRxRing(nil)
	w.doIO(io, 0)
	return nil
}

func (w *Worker) loop(io *dpdk.IO) {
	c := w.pl.Counters()
	queues := w.cfg.Queues
	staged := 0 // frames staged for tx by the previous burst
	idle := 0
	last := monoNow()
	for !w.stop.Load() {
		empty := true
		for qi := range queues {
			q := &queues[qi]
			io.SetRx(q.RxPort, q.RxQueue)
			w.doIO(io, staged)
			staged = 0
			rx := io.Rx()
			now := monoNow()
			if len(rx) == 0 {
				c.EmptyPolls.Add(1)
				c.IdleNanos.Add(uint64(now - last))
				last = now
				continue
			}
			empty = false
			staged = w.process(io, q, rx, now)
			end := monoNow()
			c.BusyNanos.Add(uint64(end - last))
			last = end
		}
		if empty && w.cfg.IdlePolls > 0 {
			if idle++; idle >= w.cfg.IdlePolls {
				time.Sleep(w.cfg.IdleSleep)
				idle = 0
			}
		} else {
			idle = 0
		}
	}
}

// doIO makes the burst's one cgo call and accounts for what the previous
// burst staged for tx.
func (w *Worker) doIO(io *dpdk.IO, staged int) {
	io.Do()
	if staged == 0 {
		return
	}
	sent := io.Sent()
	var bytes uint64
	for i := 0; i < sent && i < len(w.txBytes); i++ {
		bytes += uint64(w.txBytes[i])
	}
	c := w.pl.Counters()
	c.TxPackets.Add(uint64(sent))
	c.TxBytes.Add(bytes)
	if sent < staged {
		w.pl.CountDrop(filter.DropTxFull, uint64(staged-sent))
	}
}

// process decodes and judges one burst, stages accepted frames for tx on the
// paired port and the rest for freeing. It returns how many were staged for tx.
func (w *Worker) process(io *dpdk.IO, q *Queue, rx []*dpdk.Mbuf, now int64) int {
	b := &w.burst
	n := min(len(rx), dataplane.BurstSize)
	b.N = n
	var rxBytes uint64
	for i := 0; i < n; i++ {
		m := rx[i]
		rxBytes += uint64(m.PktLen())
		b.Decode(i, m.Data())
	}
	c := w.pl.Counters()
	c.RxPackets.Add(uint64(n))
	c.RxBytes.Add(rxBytes)
	c.Bursts.Add(1)
	if !q.Routed {
		for i := 0; i < n; i++ {
			io.Drop(rx[i])
		}
		w.pl.CountDrop(filter.DropNoRoute, uint64(n))
		return 0
	}
	w.pl.Process(b, uint16(q.RxPort), now)
	io.SetTx(q.TxPort, q.TxQueue)
	staged := 0
	for i := 0; i < n; i++ {
		if b.Verdict[i] == filter.Accept {
			w.txBytes[staged] = rx[i].PktLen()
			io.Tx(rx[i])
			staged++
		} else {
			io.Drop(rx[i])
		}
	}
	return staged
}

// noCopy makes go vet reject copies of Worker.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
