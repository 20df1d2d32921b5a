package dpdk

/*
#include <stdlib.h>
#include "dpfw_shim.h"
*/
import "C"

import "unsafe"

// NoPort as an rx port makes IO.Do skip the port and read its ring instead.
const NoPort = 0xffff

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
	io.rx_port = NoPort
	return (*IO)(io), nil
}

// Free frees any staged mbufs and the area itself.
func (io *IO) Free() {
	C.dpfw_io_flush((*C.struct_dpfw_io)(io))
	C.dpfw_io_free((*C.struct_dpfw_io)(io))
}

// Flush frees every staged mbuf without sending it.
func (io *IO) Flush() { C.dpfw_io_flush((*C.struct_dpfw_io)(io)) }

// SetRx chooses where the next Do receives from.
func (io *IO) SetRx(p Port, queue uint16) {
	io.rx_port = C.uint16_t(p)
	io.rx_queue = C.uint16_t(queue)
	io.rx_ring = nil
}

// SetRxRing makes the next Do receive from r instead of a port.
func (io *IO) SetRxRing(r *Ring) {
	io.rx_port = NoPort
	io.rx_ring = (*C.struct_rte_ring)(r)
}

// SetTx chooses where the staged tx mbufs go on the next Do.
func (io *IO) SetTx(p Port, queue uint16) {
	io.tx_port = C.uint16_t(p)
	io.tx_queue = C.uint16_t(queue)
}

// Do is the burst's one cgo call: send, free, steer, receive.
func (io *IO) Do() { C.dpfw_io((*C.struct_dpfw_io)(io)) }

// Rx returns the mbufs received by the last Do.
func (io *IO) Rx() []*Mbuf {
	return unsafe.Slice((**Mbuf)(unsafe.Pointer(&io.rx[0])), int(io.n_rx))
}

// Sent returns how many staged tx mbufs the last Do transmitted; the rest
// were freed (tx ring full).
func (io *IO) Sent() int { return int(io.n_sent) }

// Tx stages m for transmission by the next Do. At most BurstSize mbufs can be
// staged per Do; Precondition: fewer than BurstSize are staged.
func (io *IO) Tx(m *Mbuf) {
	io.tx[io.n_tx&(BurstSize-1)] = (*C.struct_rte_mbuf)(unsafe.Pointer(m))
	io.n_tx++
}

// Drop stages m to be freed by the next Do. Precondition: fewer than
// BurstSize are staged.
func (io *IO) Drop(m *Mbuf) {
	io.drop[io.n_drop&(BurstSize-1)] = (*C.struct_rte_mbuf)(unsafe.Pointer(m))
	io.n_drop++
}

// MaxSteer is the largest number of workers software steering can address.
const MaxSteer = 8

// SetSteerRing sets the ring that Steer(w, …) feeds.
func (io *IO) SetSteerRing(w int, r *Ring) { io.steer_ring[w] = (*C.struct_rte_ring)(r) }

// Steer stages m to be enqueued on worker w's ring by the next Do.
// Precondition: SetSteerRing(w) was called; fewer than BurstSize are staged for w.
func (io *IO) Steer(w int, m *Mbuf) {
	n := io.n_steer[w&(MaxSteer-1)]
	io.steer[w&(MaxSteer-1)][n&(BurstSize-1)] = (*C.struct_rte_mbuf)(unsafe.Pointer(m))
	io.n_steer[w&(MaxSteer-1)] = n + 1
}

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
