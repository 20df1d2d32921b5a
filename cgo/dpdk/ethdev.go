package dpdk

/*
#include <stdlib.h>
#include "dpfw_shim.h"
*/
import "C"

import (
	"fmt"
	"net"
	"unsafe"
)

// Port is a DPDK ethdev port id. A Port is valid iff it was returned by
// PortByName.
type Port uint16

// PortByName finds the port probed for a device name, e.g. "net_tap0" or
// "0000:01:00.0".
func PortByName(name string) (Port, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var p C.uint16_t
	if err := errno("rte_eth_dev_get_port_by_name "+name, C.dpfw_port_by_name(cname, &p)); err != nil {
		return 0, err
	}
	return Port(p), nil
}

// PortConfig sets up a port.
type PortConfig struct {
	RxQueues, TxQueues uint16
	RxDesc, TxDesc     uint16
	Promiscuous        bool
	// RxChecksum enables the receive checksum offloads the device has.
	RxChecksum bool
	// MTU is set on the device (0: the device's own); devices that cannot
	// change it keep theirs.
	MTU  uint16
	Pool *Mempool
}

// PortInfo is what the device reported when it was set up.
type PortInfo struct {
	Driver                   string
	MaxRxQueues, MaxTxQueues uint16
	MaxMTU                   uint16
	HashKeySize              uint8
	RSSOffloads              uint64 // flow types the device can hash
	RSSEnabled               uint64 // flow types enabled (0: no RSS)
	// RxChecksum lists the receive checksum offloads enabled
	// (RTE_ETH_RX_OFFLOAD_* bits; 0: checksums are left to software).
	RxChecksum uint64
	Socket     int
	MAC        net.HardwareAddr
	// IfIndex is the host interface the port was created on (net_tap:
	// the tap's ifindex at probe), 0 if none.
	IfIndex int
}

// Setup configures and starts the port: queues, descriptors, symmetric RSS
// where the device supports it (hash types masked by what it reports).
func (p Port) Setup(c PortConfig) (PortInfo, error) {
	var info C.struct_dpfw_port_info
	ret := C.dpfw_port_setup(C.uint16_t(p), (*C.struct_rte_mempool)(c.Pool), C.uint16_t(c.RxQueues), C.uint16_t(c.TxQueues),
		C.uint16_t(c.RxDesc), C.uint16_t(c.TxDesc), boolInt(c.Promiscuous), boolInt(c.RxChecksum), C.uint16_t(c.MTU), &info)
	pi := PortInfo{
		Driver:      C.GoString(&info.driver[0]),
		MaxRxQueues: uint16(info.max_rx_queues),
		MaxTxQueues: uint16(info.max_tx_queues),
		MaxMTU:      uint16(info.max_mtu),
		HashKeySize: uint8(info.hash_key_size),
		RSSOffloads: uint64(info.flow_type_rss_offloads),
		RSSEnabled:  uint64(info.rss_hf),
		RxChecksum:  uint64(info.rx_csum),
		Socket:      int(int32(info.socket)),
		MAC:         C.GoBytes(unsafe.Pointer(&info.mac[0]), 6),
		IfIndex:     int(info.if_index),
	}
	if ret == -C.E2BIG {
		return pi, fmt.Errorf("port %d (%s): %d rx / %d tx queues asked, the device has at most %d rx / %d tx",
			p, pi.Driver, c.RxQueues, c.TxQueues, pi.MaxRxQueues, pi.MaxTxQueues)
	}
	return pi, errno(fmt.Sprintf("port %d setup", p), ret)
}

// RxChecksumNames names the receive checksum offloads in a PortInfo.
func RxChecksumNames(bits uint64) string {
	var s string
	for _, o := range []struct {
		bit  uint64
		name string
	}{{C.RTE_ETH_RX_OFFLOAD_IPV4_CKSUM, "ipv4"}, {C.RTE_ETH_RX_OFFLOAD_TCP_CKSUM, "tcp"}, {C.RTE_ETH_RX_OFFLOAD_UDP_CKSUM, "udp"}} {
		if bits&o.bit != 0 {
			if s != "" {
				s += ","
			}
			s += o.name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// Stop stops the port.
func (p Port) Stop() error {
	return errno(fmt.Sprintf("port %d stop", p), C.dpfw_port_stop(C.uint16_t(p)))
}

// Close releases the port (and, for net_tap, removes its kernel interface).
func (p Port) Close() error {
	return errno(fmt.Sprintf("port %d close", p), C.dpfw_port_close(C.uint16_t(p)))
}

// Link is a port's link status.
type Link struct {
	Up         bool
	SpeedMbps  uint32
	FullDuplex bool
}

// Link returns the link status without waiting.
func (p Port) Link() (Link, error) {
	var speed C.uint32_t
	var up, duplex C.int
	if err := errno("rte_eth_link_get_nowait", C.dpfw_link(C.uint16_t(p), &speed, &up, &duplex)); err != nil {
		return Link{}, err
	}
	return Link{Up: up != 0, SpeedMbps: uint32(speed), FullDuplex: duplex != 0}, nil
}

// Stats are the port's basic counters (rte_eth_stats).
type Stats struct {
	IPackets, OPackets uint64
	IBytes, OBytes     uint64
	IMissed            uint64 // dropped by the NIC: rx ring full
	IErrors, OErrors   uint64
	RxNoMbuf           uint64
}

// Stats reads the port counters. It is meant for the control side.
func (p Port) Stats() (Stats, error) {
	var st C.struct_rte_eth_stats
	if err := errno("rte_eth_stats_get", C.dpfw_port_stats(C.uint16_t(p), &st)); err != nil {
		return Stats{}, err
	}
	return Stats{
		IPackets: uint64(st.ipackets), OPackets: uint64(st.opackets),
		IBytes: uint64(st.ibytes), OBytes: uint64(st.obytes),
		IMissed: uint64(st.imissed), IErrors: uint64(st.ierrors), OErrors: uint64(st.oerrors),
		RxNoMbuf: uint64(st.rx_nombuf),
	}, nil
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
