// Package flowexport sends flow records to IPFIX collectors (RFC 7011,
// information elements from RFC 7012 and the IANA registry) over UDP: one
// uniflow record per direction of a connection, with its 5-tuple,
// octetDeltaCount, packetDeltaCount, flowStartMilliseconds,
// flowEndMilliseconds, flowEndReason and firewallEvent.
package flowexport

import (
	"encoding/binary"
	"time"
)

// Information elements (IANA "IPFIX Information Elements").
const (
	ieOctetDeltaCount          = 1
	iePacketDeltaCount         = 2
	ieProtocolIdentifier       = 4
	ieSourceTransportPort      = 7
	ieSourceIPv4Address        = 8
	ieDestinationTransportPort = 11
	ieDestinationIPv4Address   = 12
	ieSourceIPv6Address        = 27
	ieDestinationIPv6Address   = 28
	ieICMPTypeCodeIPv4         = 32
	ieFlowEndReason            = 136
	ieICMPTypeCodeIPv6         = 139
	ieFlowStartMilliseconds    = 152
	ieFlowEndMilliseconds      = 153
	ieFirewallEvent            = 233
)

// flowEndReason values (RFC 7012).
const (
	EndIdle      = 1 // idle timeout
	EndActive    = 2 // active timeout: the flow goes on
	EndOfFlow    = 3 // end of flow detected (TCP FIN or RST)
	EndForced    = 4 // forced end (flush, shutdown)
	EndResources = 5 // lack of resources (evicted)
)

// firewallEvent values (IANA) dpfw sends: a connection that ended, and
// one still open (an active-timeout report).
const (
	EventDeleted = 2
	EventUpdated = 5
)

// Template ids (≥ 256: data sets): one per address family.
const (
	template4 = 256
	template6 = 257
)

type field struct{ id, len uint16 }

// fields are a template's elements, in record order.
func fields(v6 bool) []field {
	addr, src, dst, icmp := uint16(4), uint16(ieSourceIPv4Address), uint16(ieDestinationIPv4Address), uint16(ieICMPTypeCodeIPv4)
	if v6 {
		addr, src, dst, icmp = 16, ieSourceIPv6Address, ieDestinationIPv6Address, ieICMPTypeCodeIPv6
	}
	return []field{
		{src, addr}, {dst, addr}, {ieSourceTransportPort, 2}, {ieDestinationTransportPort, 2}, {icmp, 2},
		{ieProtocolIdentifier, 1}, {ieOctetDeltaCount, 8}, {iePacketDeltaCount, 8},
		{ieFlowStartMilliseconds, 8}, {ieFlowEndMilliseconds, 8}, {ieFlowEndReason, 1}, {ieFirewallEvent, 1},
	}
}

// recordLen is a data record's length.
func recordLen(v6 bool) int {
	n := 0
	for _, f := range fields(v6) {
		n += int(f.len)
	}
	return n
}

// Record is one direction of one connection.
type Record struct {
	V6       bool
	Src, Dst [16]byte
	// SrcPort and DstPort are TCP/UDP/SCTP ports; ICMPTypeCode is an
	// ICMP message's type × 256 + code.
	SrcPort, DstPort uint16
	ICMPTypeCode     uint16
	Proto            uint8
	Octets, Packets  uint64
	Start, End       time.Time
	EndReason        uint8
	Event            uint8
}

// headerLen is the message header; setHeaderLen a set header.
const (
	headerLen    = 16
	setHeaderLen = 4
)

// appendTemplates appends a template set with both templates.
func appendTemplates(b []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, 2) // template set
	b = binary.BigEndian.AppendUint16(b, 0) // length, below
	for _, t := range []struct {
		id uint16
		v6 bool
	}{{template4, false}, {template6, true}} {
		fs := fields(t.v6)
		b = binary.BigEndian.AppendUint16(b, t.id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(fs)))
		for _, f := range fs {
			b = binary.BigEndian.AppendUint16(b, f.id)
			b = binary.BigEndian.AppendUint16(b, f.len)
		}
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

// appendRecord appends r's data record (its set's template must match).
func appendRecord(b []byte, r *Record) []byte {
	n := 4
	if r.V6 {
		n = 16
	}
	b = append(b, r.Src[:n]...)
	b = append(b, r.Dst[:n]...)
	b = binary.BigEndian.AppendUint16(b, r.SrcPort)
	b = binary.BigEndian.AppendUint16(b, r.DstPort)
	b = binary.BigEndian.AppendUint16(b, r.ICMPTypeCode)
	b = append(b, r.Proto)
	b = binary.BigEndian.AppendUint64(b, r.Octets)
	b = binary.BigEndian.AppendUint64(b, r.Packets)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Start.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.End.UnixMilli()))
	return append(b, r.EndReason, r.Event)
}

// Encoder builds IPFIX messages for one observation domain, numbering
// them as RFC 7011 says: each header carries the count of data records
// sent in the domain before it.
type Encoder struct {
	Domain uint32
	seq    uint32
}

// Message encodes a message of at most max bytes sent at now: the
// templates if templates is set, then as many of recs as fit, grouped in
// one data set per family. It returns the message and how many records it
// holds.
func (e *Encoder) Message(now time.Time, templates bool, recs []Record, max int) ([]byte, int) {
	b := make([]byte, headerLen, max)
	if templates {
		b = appendTemplates(b)
	}
	n := 0
	for n < len(recs) {
		v6 := recs[n].V6
		rl := recordLen(v6)
		if len(b)+setHeaderLen+rl > max {
			break
		}
		set := len(b)
		id := uint16(template4)
		if v6 {
			id = template6
		}
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint16(b, 0)
		for n < len(recs) && recs[n].V6 == v6 && len(b)+rl <= max {
			b = appendRecord(b, &recs[n])
			n++
		}
		binary.BigEndian.PutUint16(b[set+2:], uint16(len(b)-set))
	}
	binary.BigEndian.PutUint16(b[0:], 10) // IPFIX
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[4:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(b[8:], e.seq)
	binary.BigEndian.PutUint32(b[12:], e.Domain)
	e.seq += uint32(n)
	return b, n
}
