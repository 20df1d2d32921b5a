// Package hasync keeps connection state in sync between firewall nodes on
// conntrackd's protocol (package wire), so that a dpfw node can pair with
// another dpfw node or with a Linux firewall running conntrackd.
//
// This part is conntrackd's NOTRACK mode (best effort, no
// acknowledgements): the connection events of this node's workers become
// CT messages batched into datagrams to the peer; the peer's messages
// fill an external cache (conntrackd -e), which a backup keeps until it
// takes over; a node that starts asks its peer for everything (RESYNC)
// and answers the same request with a dump of its tables; an ALIVE
// message goes out every second the link is otherwise idle.
package hasync

import (
	"fmt"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/control/hasync/wire"
	"github.com/dpfw/dpfw/packet/header"
)

// FromEntry is the CT message body for a connection: what conntrackd's
// ct2msg sends for one from the kernel (tuple, status, protocol, its
// state, timeout). dpfw does not NAT, mark or label connections; window
// scales are not sent (conntrackd sends them only with
// TCPWindowTracking, and the receiver tracks a synced connection's
// windows liberally until it has seen both directions).
func FromEntry(e *conntrack.Entry) wire.Conn {
	o := &e.Orig
	c := wire.Conn{Orig: wire.Tuple{Src: o.SrcAddr(), Dst: o.DstAddr(), Proto: o.Proto},
		Status: wire.StatusConfirmed, Timeout: uint32(max(e.ExpiresIn, 0) / time.Second)}
	if o.Family == 4 {
		c.Set(wire.AttrIPv4)
	} else {
		c.Set(wire.AttrIPv6)
	}
	c.Set(wire.AttrStatus)
	c.Set(wire.AttrL4Proto)
	if e.SeenReply {
		c.Status |= wire.StatusSeenReply
	}
	if e.Assured {
		c.Status |= wire.StatusAssured
	}
	if e.Related {
		c.Status |= wire.StatusExpected
	}
	switch o.Proto {
	case header.ProtoTCP:
		c.Orig.SrcPort, c.Orig.DstPort, c.TCPState = o.SrcPort, o.DstPort, uint8(e.TCPState)
		c.Set(wire.AttrPort)
		c.Set(wire.AttrTCPState)
	case header.ProtoUDP, header.ProtoSCTP:
		c.Orig.SrcPort, c.Orig.DstPort = o.SrcPort, o.DstPort
		c.Set(wire.AttrPort)
	case header.ProtoICMP, header.ProtoICMPv6:
		c.ICMPType, c.ICMPCode = o.ICMP()
		c.ICMPID = o.SrcPort
		c.Set(wire.AttrICMPType)
		c.Set(wire.AttrICMPCode)
		c.Set(wire.AttrICMPID)
	}
	c.Set(wire.AttrTimeout)
	return c
}

// ToEntry is the connection a CT message describes, in zone: what the
// external cache holds and what a takeover installs. A message dpfw
// cannot represent is refused with the reason: NAT (dpfw does not
// translate), no addresses, or a TCP state outside netfilter's.
func ToEntry(c *wire.Conn, zone uint16) (conntrack.Entry, error) {
	if c.Has&(1<<wire.AttrSNATIPv4|1<<wire.AttrDNATIPv4|1<<wire.AttrSPATPort|1<<wire.AttrDPATPort|1<<wire.AttrNATSeqAdj) != 0 ||
		c.Status&(wire.StatusSrcNAT|wire.StatusDstNAT) != 0 {
		return conntrack.Entry{}, errNAT
	}
	if !c.HasAttr(wire.AttrIPv4) && !c.HasAttr(wire.AttrIPv6) || !c.HasAttr(wire.AttrL4Proto) {
		return conntrack.Entry{}, errNoTuple
	}
	sport, dport := c.Orig.SrcPort, c.Orig.DstPort
	if p := c.Orig.Proto; p == header.ProtoICMP || p == header.ProtoICMPv6 {
		sport, dport = c.ICMPID, uint16(c.ICMPType)<<8|uint16(c.ICMPCode)
	}
	t, ok := conntrack.MakeTuple(c.Orig.Src, c.Orig.Dst, c.Orig.Proto, sport, dport, zone)
	if !ok {
		return conntrack.Entry{}, errNoTuple
	}
	e := conntrack.Entry{Orig: t, Master: -1, SeenReply: c.Status&wire.StatusSeenReply != 0,
		Assured: c.Status&wire.StatusAssured != 0, Related: c.Status&wire.StatusExpected != 0,
		ExpiresIn: time.Duration(c.Timeout) * time.Second}
	if t.Proto == header.ProtoTCP {
		if !c.HasAttr(wire.AttrTCPState) || int(c.TCPState) >= tcpstate.NumStates || c.TCPState == 0 {
			return conntrack.Entry{}, fmt.Errorf("%w %d", errTCPState, c.TCPState)
		}
		e.TCPState = tcpstate.State(c.TCPState)
	}
	return e, nil
}

// Why a message is not taken (each is counted under its name).
var (
	errNAT      = refusal("nat", "a NAT connection (dpfw does not translate addresses)")
	errNoTuple  = refusal("tuple", "no complete tuple (addresses of one family and a protocol)")
	errTCPState = refusal("tcp_state", "a TCP connection without a state netfilter has")
)

// refused is a message the node does not take, and the name it is
// counted under.
type refused struct{ name, msg string }

func (r *refused) Error() string { return r.msg }

func refusal(name, msg string) error { return &refused{name, msg} }
