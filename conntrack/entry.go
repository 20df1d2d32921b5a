package conntrack

import (
	"strconv"
	"time"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet/header"
)

// Entry is a copy of one connection for the control side (conntrack -L).
type Entry struct {
	ID        uint32 // entry index in its worker's table
	Orig      Tuple
	TCPState  tcpstate.State
	ExpiresIn time.Duration
	SeenReply bool
	Assured   bool
	Related   bool
	Master    int64 // entry index of the master connection, -1 if none
	// Acct holds the counters when the tracker keeps them (HasAcct).
	Acct    Acct
	HasAcct bool
}

// Entry copies connection i, if it is in use.
func (tr *Tracker) Entry(i uint32) (Entry, bool) {
	if int(i) >= len(tr.Table.conns) {
		return Entry{}, false
	}
	c := &tr.Table.conns[i]
	if c.flags&flagUsed == 0 {
		return Entry{}, false
	}
	e := Entry{ID: i, Orig: c.Orig, TCPState: c.TCP.State, ExpiresIn: tr.ExpiresIn(c),
		SeenReply: c.SeenReply(), Assured: c.Assured(), Related: c.IsRelated(), Master: -1}
	if m, ok := c.Master(); ok {
		e.Master = int64(m)
	}
	if tr.Table.acct != nil {
		e.Acct, e.HasAcct = tr.Table.acct[i], true
	}
	return e, true
}

// String formats the entry like conntrack -L.
func (e *Entry) String() string { return string(e.AppendText(nil)) }

var protoNames = [256]string{header.ProtoTCP: "tcp", header.ProtoUDP: "udp", header.ProtoICMP: "icmp",
	header.ProtoICMPv6: "icmpv6", header.ProtoSCTP: "sctp"}

// appendAcct appends direction d's counters, as conntrack prints them with
// nf_conntrack_acct.
func (e *Entry) appendAcct(b []byte, d Dir) []byte {
	if !e.HasAcct {
		return b
	}
	b = append(b, " packets="...)
	b = strconv.AppendUint(b, e.Acct.Packets[d], 10)
	b = append(b, " bytes="...)
	return strconv.AppendUint(b, e.Acct.Bytes[d], 10)
}

// AppendText appends the entry as conntrack -L prints it (no newline).
// Listings of millions of entries use it with one buffer.
func (e *Entry) AppendText(b []byte) []byte {
	proto := protoNames[e.Orig.Proto]
	if proto == "" {
		proto = "unknown"
	}
	b = append(b, proto...)
	for i := len(proto); i < 8; i++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(e.Orig.Proto), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(e.ExpiresIn/time.Second), 10)
	b = append(b, ' ')
	if e.Orig.Proto == header.ProtoTCP {
		b = append(b, e.TCPState.String()...)
		b = append(b, ' ')
	}
	b = e.Orig.AppendText(b)
	b = e.appendAcct(b, Original)
	if !e.SeenReply {
		b = append(b, " [UNREPLIED]"...)
	}
	b = append(b, ' ')
	b = e.Orig.Reverse().AppendText(b)
	b = e.appendAcct(b, Reply)
	if e.Assured {
		b = append(b, " [ASSURED]"...)
	}
	b = append(b, " zone="...)
	b = strconv.AppendUint(b, uint64(e.Orig.Zone), 10)
	b = append(b, " id="...)
	b = strconv.AppendUint(b, uint64(e.ID), 10)
	if e.Related {
		b = append(b, " [RELATED] master="...)
		b = strconv.AppendInt(b, e.Master, 10)
	}
	return b
}
