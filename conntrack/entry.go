package conntrack

import (
	"fmt"
	"strings"
	"time"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane/header"
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
	return e, true
}

// String formats the entry like conntrack -L.
func (e *Entry) String() string {
	var b strings.Builder
	proto := map[uint8]string{header.ProtoTCP: "tcp", header.ProtoUDP: "udp", header.ProtoICMP: "icmp", header.ProtoICMPv6: "icmpv6", header.ProtoSCTP: "sctp"}[e.Orig.Proto]
	if proto == "" {
		proto = "unknown"
	}
	fmt.Fprintf(&b, "%-8s %d %d ", proto, e.Orig.Proto, int64(e.ExpiresIn/time.Second))
	if e.Orig.Proto == header.ProtoTCP {
		fmt.Fprintf(&b, "%s ", e.TCPState)
	}
	b.WriteString(e.Orig.String())
	if !e.SeenReply {
		b.WriteString(" [UNREPLIED]")
	}
	b.WriteString(" " + e.Orig.Reverse().String())
	if e.Assured {
		b.WriteString(" [ASSURED]")
	}
	fmt.Fprintf(&b, " zone=%d id=%d", e.Orig.Zone, e.ID)
	if e.Related {
		fmt.Fprintf(&b, " [RELATED] master=%d", e.Master)
	}
	return b.String()
}
