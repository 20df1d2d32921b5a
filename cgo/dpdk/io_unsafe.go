package dpdk

/*
#include <stdlib.h>
#include "dpfw_shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// IO is one worker's burst exchange area with DPDK, in C memory. It is owned
// by one lcore and not safe for concurrent use.
//
// Per burst the worker calls Do once: it transmits the staged tx mbufs, frees
// the staged drops (and whatever the tx queue refused), and receives the next
// burst. That is the data plane's single cgo crossing per burst.
type IO C.struct_dpfw_io

// NewIO allocates an IO area. Precondition: EAL initialized.
func NewIO() (*IO, error) {
	io := C.dpfw_io_alloc()
	if io == nil {
		return nil, rteErrno("rte_zmalloc dpfw_io")
	}
	return (*IO)(io), nil
}

// Free frees any staged mbufs and the area itself.
func (io *IO) Free() {
	C.dpfw_io_flush((*C.struct_dpfw_io)(io))
	C.dpfw_io_free((*C.struct_dpfw_io)(io))
}

// MaxRxQueues is the most rx sources one IO polls.
const MaxRxQueues = C.DPFW_MAX_RXQ

// RxSource is one place Do receives from: a port's rx queue, or a ring.
type RxSource struct {
	Port  Port
	Queue uint16
	Ring  *Ring // non-nil: dequeue the ring instead of the port
}

// SetRxSources sets the sources Do polls round-robin. Do returns after the
// first non-empty poll or after maxEmpty empty ones.
func (io *IO) SetRxSources(srcs []RxSource, maxEmpty uint32) error {
	if len(srcs) > MaxRxQueues {
		return fmt.Errorf("dpdk: %d rx sources; at most %d", len(srcs), MaxRxQueues)
	}
	for i, s := range srcs {
		io.rx_port[i] = C.uint16_t(s.Port)
		io.rx_queue[i] = C.uint16_t(s.Queue)
		io.rx_ring[i] = (*C.struct_rte_ring)(s.Ring)
	}
	io.n_rxq = C.uint16_t(len(srcs))
	io.cursor = 0
	io.max_empty = C.uint32_t(max(maxEmpty, 1))
	return nil
}

// SetTx chooses where the staged tx mbufs go on the next Do.
func (io *IO) SetTx(p Port, queue uint16) {
	io.tx_port = C.uint16_t(p)
	io.tx_queue = C.uint16_t(queue)
}

// Do is the burst's one cgo call: send, free, steer, then poll the rx
// sources until one has packets (or maxEmpty polls were empty).
func (io *IO) Do() { C.dpfw_io((*C.struct_dpfw_io)(io)) }

// RxIndex returns which source (index into SetRxSources) the last burst came from.
func (io *IO) RxIndex() int { return int(io.rx_index) }

// TSC returns the time stamp counter read when the last Do's poll returned.
func (io *IO) TSC() uint64 { return uint64(io.tsc) }

// EmptyPolls returns the cumulative number of polls that returned nothing.
func (io *IO) EmptyPolls() uint64 { return uint64(io.empty_polls) }

// Rx returns the mbufs received by the last Do.
func (io *IO) Rx() []*Mbuf {
	return unsafe.Slice((**Mbuf)(unsafe.Pointer(&io.rx[0])), int(io.n_rx))
}

// Sent returns how many staged tx mbufs the last Do transmitted; the rest
// were freed (tx ring full).
func (io *IO) Sent() int { return int(io.n_sent) }

// Actions for the packets of a burst (see Actions).
const (
	ActDrop  = C.DPFW_ACT_DROP
	ActTx    = C.DPFW_ACT_TX
	ActSteer = C.DPFW_ACT_STEER // + worker index
	ActReply = C.DPFW_ACT_REPLY // send on the reply port (SetReply)
	// ActHold leaves the mbuf to Go, which keeps it and hands it back
	// with Release.
	ActHold = C.DPFW_ACT_HOLD
)

// MaxHeld is the most mbufs a worker may hold (ActHold) and so the most
// Release calls between two Do calls.
const MaxHeld = C.DPFW_HOLD_MAX

// Release hands a held mbuf back: the next Do sends it on port p, queue
// q, before the burst's own tx (or frees it if it cannot). It reports
// false, changing nothing, when MaxHeld releases wait already.
func (io *IO) Release(m *Mbuf, p Port, q uint16) bool {
	return io.release(m, uint16(p), q)
}

// ReleaseFree hands a held mbuf back for the next Do to free.
func (io *IO) ReleaseFree(m *Mbuf) bool { return io.release(m, C.DPFW_REL_FREE, 0) }

func (io *IO) release(m *Mbuf, p, q uint16) bool {
	n := int(io.n_rel)
	if n >= MaxHeld {
		return false
	}
	io.rel[n] = (*C.struct_rte_mbuf)(unsafe.Pointer(m))
	io.rel_port[n], io.rel_queue[n] = C.uint16_t(p), C.uint16_t(q)
	io.n_rel = C.uint16_t(n + 1)
	return true
}

// ReleasedSent reports, for release k (in Release order) of the last Do,
// whether the device took it; the rest were freed.
func (io *IO) ReleasedSent(k int) bool { return k < int(io.n_rel_done) && io.rel_sent[k] != 0 }

// SetReply chooses where ActReply mbufs go on the next Do.
func (io *IO) SetReply(p Port, queue uint16) {
	io.reply_port = C.uint16_t(p)
	io.reply_queue = C.uint16_t(queue)
}

// RepliesSent returns how many ActReply mbufs the last Do transmitted.
func (io *IO) RepliesSent() int { return int(io.n_reply_sent) }

// Actions returns the action array for the burst Rx returned: the caller
// sets Actions()[i] for every received mbuf and calls Commit; the next Do
// sends, frees or steers each accordingly. Every received mbuf must be given
// an action: Commit(len(Rx())) is the only valid count.
func (io *IO) Actions() *[BurstSize]uint8 {
	return (*[BurstSize]uint8)(unsafe.Pointer(&io.action[0]))
}

// Commit hands the first n received mbufs, with their actions, to the next Do.
func (io *IO) Commit(n int) { io.n_action = C.uint16_t(n) }

// MaxSteer is the largest number of workers software steering can address.
const MaxSteer = 8

// SetSteerRing sets the ring that ActSteer+w feeds.
func (io *IO) SetSteerRing(w int, r *Ring) { io.steer_ring[w] = (*C.struct_rte_ring)(r) }

// SteerRefused returns how many mbufs the last Do freed because worker w's
// ring was full.
func (io *IO) SteerRefused(w int) int { return int(io.n_steer_full[w&(MaxSteer-1)]) }

// Ring is a DPDK ring of mbuf pointers: multi-producer, single-consumer.
type Ring C.struct_rte_ring

// NewRing creates a ring of count slots (a power of two).
func NewRing(name string, count uint, socket int) (*Ring, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	r := C.dpfw_ring_create(cname, C.unsigned(count), C.int(socket))
	if r == nil {
		return nil, rteErrno("rte_ring_create " + name)
	}
	return (*Ring)(r), nil
}

// DrainFree frees every mbuf left in the ring.
func (r *Ring) DrainFree() { C.dpfw_ring_drain_free((*C.struct_rte_ring)(r)) }

// Free releases the ring. Precondition: drained.
func (r *Ring) Free() { C.dpfw_ring_free((*C.struct_rte_ring)(r)) }
