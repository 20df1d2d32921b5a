package dpdk

/*
#include <stdlib.h>
#include "dpfw_shim.h"
*/
import "C"

import "unsafe"

// Mempool is a DPDK packet mbuf pool. A Mempool is valid iff it was returned
// by NewMempool and not yet freed.
type Mempool C.struct_rte_mempool

// NewMempool creates a pool of n mbufs with a per-lcore cache of cache mbufs
// and dataRoom bytes of buffer each (including headroom). socket -1 means any.
func NewMempool(name string, n, cache uint, dataRoom uint16, socket int) (*Mempool, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	mp := C.dpfw_pool_create(cname, C.unsigned(n), C.unsigned(cache), C.uint16_t(dataRoom), C.int(socket))
	if mp == nil {
		return nil, rteErrno("rte_pktmbuf_pool_create " + name)
	}
	return (*Mempool)(mp), nil
}

// InUse returns the number of mbufs taken from the pool (including those
// sitting in rx rings and per-lcore caches).
func (mp *Mempool) InUse() uint { return uint(C.dpfw_pool_in_use((*C.struct_rte_mempool)(mp))) }

// Avail returns the number of mbufs available in the pool.
func (mp *Mempool) Avail() uint { return uint(C.dpfw_pool_avail((*C.struct_rte_mempool)(mp))) }

// Free releases the pool. Every mbuf must have been returned.
func (mp *Mempool) Free() { C.dpfw_pool_free((*C.struct_rte_mempool)(mp)) }
