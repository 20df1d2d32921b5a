package conntrack

import (
	"strconv"
	"time"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet/header"
)

// Entry is a copy of one connection for the control side (conntrack -L).
type Entry struct {
	// ID is what conntrack -L shows as id=: like the kernel's (a keyed
	// hash of where the entry lives and its tuple), it differs across
	// workers and when a slot is reused by another connection.
	ID        uint32
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
	// Start is when the connection was created, when the tracker keeps
	// timestamps (the zero Time otherwise); End, in a DESTROY event, when
	// it was destroyed; AsOf when the entry was copied.
	Start, End, AsOf time.Time
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
	e := Entry{ID: tr.connID(i), Orig: c.Orig, TCPState: c.TCP.State, ExpiresIn: tr.ExpiresIn(c),
		SeenReply: c.SeenReply(), Assured: c.Assured(), Related: c.IsRelated(), Master: -1}
	if m, ok := c.Master(); ok {
		e.Master = int64(tr.connID(m))
	}
	if tr.Table.acct != nil {
		e.Acct, e.HasAcct = tr.Table.acct[i], true
	}
	if tr.Table.start != nil {
		e.Start, e.AsOf = tr.WallTime(tr.Table.start[i]), tr.WallTime(tr.now)
	}
	return e, true
}

// connID is entry i's id: the table's keyed hash of its tuple, mixed with
// the worker and the slot.
func (tr *Tracker) connID(i uint32) uint32 {
	h := tr.Table.Hash(&tr.Table.conns[i].Orig) ^ (uint64(tr.cfg.Worker)<<32 | uint64(i))
	h *= 0x9e3779b97f4a7c15
	return uint32(h>>32) ^ uint32(h)
}

// String formats the entry like conntrack -L.
func (e *Entry) String() string { return string(e.AppendText(nil)) }

var protoNames = [256]string{header.ProtoTCP: "tcp", header.ProtoUDP: "udp", header.ProtoICMP: "icmp",
	header.ProtoICMPv6: "icmpv6", header.ProtoSCTP: "sctp"}

// ProtoName is protocol p's name as conntrack prints it, or its number.
func ProtoName(p uint8) string {
	if n := protoNames[p]; n != "" {
		return n
	}
	return strconv.Itoa(int(p))
}

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
	b = e.appendStamps(b)
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

// appendStamps appends delta-time=, as conntrack prints it with
// nf_conntrack_timestamp: whole seconds since the connection started (in
// a DESTROY event, until it ended). conntrack prints it whether or not
// -o timestamp is given.
func (e *Entry) appendStamps(b []byte) []byte {
	if e.Start.IsZero() {
		return b
	}
	end := e.End
	if end.IsZero() {
		end = e.AsOf
	}
	b = append(b, " delta-time="...)
	return strconv.AppendInt(b, int64(max(end.Sub(e.Start), 0)/time.Second), 10)
}

// TupleJSON is one direction's tuple with its fields named: addresses as
// strings, ports (for ICMP the id and the type and code instead), and the
// direction's counters when accounting is on.
type TupleJSON struct {
	Src     string  `json:"src"`
	Dst     string  `json:"dst"`
	SPort   *uint16 `json:"sport,omitempty"`
	DPort   *uint16 `json:"dport,omitempty"`
	Type    *uint8  `json:"type,omitempty"`
	Code    *uint8  `json:"code,omitempty"`
	ID      *uint16 `json:"id,omitempty"`
	Packets *uint64 `json:"packets,omitempty"`
	Bytes   *uint64 `json:"bytes,omitempty"`
}

// EntryJSON is an entry for JSON: what conntrack -L prints, as fields.
type EntryJSON struct {
	Proto     string    `json:"proto"`
	ProtoNum  uint8     `json:"proto_num"`
	Family    string    `json:"family"`
	Timeout   int64     `json:"timeout"` // seconds left
	State     string    `json:"state,omitempty"`
	Orig      TupleJSON `json:"orig"`
	Reply     TupleJSON `json:"reply"`
	SeenReply bool      `json:"seen_reply"`
	Assured   bool      `json:"assured"`
	Related   bool      `json:"related,omitempty"`
	Master    *int64    `json:"master,omitempty"`
	Zone      uint16    `json:"zone"`
	ID        uint32    `json:"id"`
	// Start (with conntrack.timestamps) is when the connection began;
	// End and DeltaTime (seconds), in a DESTROY event, when it ended.
	Start     *time.Time `json:"start,omitempty"`
	End       *time.Time `json:"end,omitempty"`
	DeltaTime *int64     `json:"delta_time,omitempty"`
}

// JSON returns the entry's fields for JSON.
func (e *Entry) JSON() EntryJSON {
	j := EntryJSON{Proto: protoNames[e.Orig.Proto], ProtoNum: e.Orig.Proto, Family: "ipv4", Timeout: int64(e.ExpiresIn / time.Second),
		SeenReply: e.SeenReply, Assured: e.Assured, Related: e.Related, Zone: e.Orig.Zone, ID: e.ID}
	if j.Proto == "" {
		j.Proto = "unknown"
	}
	if e.Orig.Family == 6 {
		j.Family = "ipv6"
	}
	if e.Orig.Proto == header.ProtoTCP {
		j.State = e.TCPState.String()
	}
	if e.Related {
		j.Master = &e.Master
	}
	j.Orig, j.Reply = e.tupleJSON(e.Orig, Original), e.tupleJSON(e.Orig.Reverse(), Reply)
	if !e.Start.IsZero() {
		j.Start = &e.Start
		if !e.End.IsZero() {
			d := int64(e.End.Sub(e.Start) / time.Second)
			j.End, j.DeltaTime = &e.End, &d
		}
	}
	return j
}

func (e *Entry) tupleJSON(t Tuple, d Dir) TupleJSON {
	j := TupleJSON{Src: t.SrcAddr().String(), Dst: t.DstAddr().String()}
	switch t.Proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP:
		sp, dp := t.SrcPort, t.DstPort
		j.SPort, j.DPort = &sp, &dp
	case header.ProtoICMP, header.ProtoICMPv6:
		typ, code, id := icmpDec[icmpV6(t.Proto)][t.DstPort>>8], uint8(t.DstPort&0xff), t.SrcPort
		j.Type, j.Code, j.ID = &typ, &code, &id
	}
	if e.HasAcct {
		p, b := e.Acct.Packets[d], e.Acct.Bytes[d]
		j.Packets, j.Bytes = &p, &b
	}
	return j
}
