package dpdk

/*
#include "dpfw_shim.h"
*/
import "C"

import "unsafe"

// Mbuf is a DPDK packet buffer. Go never allocates one and never stores a Go
// pointer in one; a *Mbuf is valid from the rx burst that returned it until it
// is handed back to IO.Do (to send or free).
type Mbuf C.struct_rte_mbuf

// Offsets of the rte_mbuf fields read from Go, as laid out by DPDK 22.11 on
// 64-bit targets. TestMbufLayout checks them against C's offsetof.
const (
	mbufBufAddrOff = 0
	mbufDataOffOff = 16
	mbufNbSegsOff  = 20
	mbufPortOff    = 22
	mbufOlFlagsOff = 24
	mbufPktLenOff  = 36
	mbufDataLenOff = 40
	mbufRSSOff     = 44
	mbufBufLenOff  = 54
)

// mbufLayout returns the offsets C reports, for TestMbufLayout.
func mbufLayout() map[string][2]int {
	return map[string][2]int{
		"buf_addr": {mbufBufAddrOff, C.DPFW_MBUF_BUF_ADDR_OFF},
		"data_off": {mbufDataOffOff, C.DPFW_MBUF_DATA_OFF_OFF},
		"nb_segs":  {mbufNbSegsOff, C.DPFW_MBUF_NB_SEGS_OFF},
		"port":     {mbufPortOff, C.DPFW_MBUF_PORT_OFF},
		"ol_flags": {mbufOlFlagsOff, C.DPFW_MBUF_OL_FLAGS_OFF},
		"pkt_len":  {mbufPktLenOff, C.DPFW_MBUF_PKT_LEN_OFF},
		"data_len": {mbufDataLenOff, C.DPFW_MBUF_DATA_LEN_OFF},
		"hash.rss": {mbufRSSOff, C.DPFW_MBUF_RSS_OFF},
		"buf_len":  {mbufBufLenOff, C.DPFW_MBUF_BUF_LEN_OFF},
	}
}

// Data returns the first segment's packet bytes. The slice aliases mbuf
// memory: it is valid only while the mbuf is.
func (m *Mbuf) Data() []byte {
	p := unsafe.Pointer(m)
	buf := *(*unsafe.Pointer)(unsafe.Add(p, mbufBufAddrOff))
	off := *(*uint16)(unsafe.Add(p, mbufDataOffOff))
	n := *(*uint16)(unsafe.Add(p, mbufDataLenOff))
	return unsafe.Slice((*byte)(unsafe.Add(buf, off)), n)
}

// Room returns the bytes available from the data start to the buffer's end.
func (m *Mbuf) Room() int {
	p := unsafe.Pointer(m)
	return int(*(*uint16)(unsafe.Add(p, mbufBufLenOff))) - int(*(*uint16)(unsafe.Add(p, mbufDataOffOff)))
}

// DataRoom returns the whole writable data area (Room bytes from the data
// start). Precondition: NbSegs() == 1.
func (m *Mbuf) DataRoom() []byte {
	p := unsafe.Pointer(m)
	buf := *(*unsafe.Pointer)(unsafe.Add(p, mbufBufAddrOff))
	off := *(*uint16)(unsafe.Add(p, mbufDataOffOff))
	return unsafe.Slice((*byte)(unsafe.Add(buf, off)), m.Room())
}

// SetLen sets a single-segment mbuf's data and packet length.
// Precondition: NbSegs() == 1 and n <= Room().
func (m *Mbuf) SetLen(n int) {
	p := unsafe.Pointer(m)
	*(*uint16)(unsafe.Add(p, mbufDataLenOff)) = uint16(n)
	*(*uint32)(unsafe.Add(p, mbufPktLenOff)) = uint32(n)
}

// PktLen returns the length of the whole packet (all segments).
func (m *Mbuf) PktLen() uint32 { return *(*uint32)(unsafe.Add(unsafe.Pointer(m), mbufPktLenOff)) }

// NbSegs returns the number of segments.
func (m *Mbuf) NbSegs() uint16 { return *(*uint16)(unsafe.Add(unsafe.Pointer(m), mbufNbSegsOff)) }

// Port returns the input port.
func (m *Mbuf) Port() uint16 { return *(*uint16)(unsafe.Add(unsafe.Pointer(m), mbufPortOff)) }

// RSS returns the RSS hash the NIC computed (valid iff OlFlags has RxRSSHash).
func (m *Mbuf) RSS() uint32 { return *(*uint32)(unsafe.Add(unsafe.Pointer(m), mbufRSSOff)) }

// OlFlags returns the offload flags.
func (m *Mbuf) OlFlags() uint64 { return *(*uint64)(unsafe.Add(unsafe.Pointer(m), mbufOlFlagsOff)) }

// RxRSSHash in OlFlags says RSS() is valid.
const (
	RxRSSHash = uint64(C.RTE_MBUF_F_RX_RSS_HASH)
)
