package flowexport

import (
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet/header"
)

// Flows turns connections into records: a connection still open after
// the active timeout is reported then and every active timeout after
// (counters since its last report), and once more when it ends. It
// remembers only the connections reported while open.
type Flows struct {
	Active time.Duration
	sent   map[Key]conntrack.Acct
}

// Key names a connection across its life: its tuple and start.
type Key struct {
	orig  conntrack.Tuple
	start int64
}

// NewFlows returns a Flows with the given active timeout.
func NewFlows(active time.Duration) *Flows {
	return &Flows{Active: active, sent: map[Key]conntrack.Acct{}}
}

// Destroyed returns the records of a connection that ended at now, for why.
func (f *Flows) Destroyed(e *conntrack.Entry, why conntrack.EndReason, now time.Time) []Record {
	k := Key{e.Orig, e.Start.UnixNano()}
	prev := f.sent[k]
	delete(f.sent, k)
	if !e.End.IsZero() {
		now = e.End
	}
	return records(e, prev, now, endReason(e, why), EventDeleted)
}

// Tick returns the records of an open connection at now, listed once per
// active timeout: nothing until it is older than the active timeout, then
// the counters since its last report, if they moved.
func (f *Flows) Tick(e *conntrack.Entry, now time.Time) []Record {
	if e.Start.IsZero() || now.Sub(e.Start) < f.Active {
		return nil
	}
	k := Key{e.Orig, e.Start.UnixNano()}
	prev := f.sent[k]
	f.sent[k] = e.Acct
	if prev == e.Acct {
		return nil // nothing new since the last report
	}
	return records(e, prev, now, EndActive, EventUpdated)
}

// Forget drops what is remembered of connections that left without a
// DESTROY seen (lost events): those not in alive.
func (f *Flows) Forget(alive map[Key]bool) {
	for k := range f.sent {
		if !alive[k] {
			delete(f.sent, k)
		}
	}
}

// KeyOf is e's key, for Forget.
func KeyOf(e *conntrack.Entry) Key { return Key{e.Orig, e.Start.UnixNano()} }

// records returns the original direction's record and, if the reply
// direction carried packets, the reply's, with counters since prev.
func records(e *conntrack.Entry, prev conntrack.Acct, now time.Time, reason, event uint8) []Record {
	out := make([]Record, 0, 2)
	for d, t := range [2]conntrack.Tuple{e.Orig, e.Orig.Reverse()} {
		pk, by := e.Acct.Packets[d]-prev.Packets[d], e.Acct.Bytes[d]-prev.Bytes[d]
		if pk == 0 && d == 1 {
			continue
		}
		r := Record{V6: t.Family == 6, Src: t.Src, Dst: t.Dst, Proto: t.Proto, Octets: by, Packets: pk,
			Start: e.Start, End: now, EndReason: reason, Event: event}
		switch t.Proto {
		case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP:
			r.SrcPort, r.DstPort = t.SrcPort, t.DstPort
		case header.ProtoICMP, header.ProtoICMPv6:
			typ, code := t.ICMP()
			r.ICMPTypeCode = uint16(typ)<<8 | uint16(code)
		}
		out = append(out, r)
	}
	return out
}

// endReason maps why a connection went to RFC 7012's flowEndReason: a TCP
// connection that expired after it closed ended by FIN or RST.
func endReason(e *conntrack.Entry, why conntrack.EndReason) uint8 {
	switch why {
	case conntrack.EndClosed:
		return EndOfFlow
	case conntrack.EndForced:
		return EndForced
	case conntrack.EndEarlyDrop:
		return EndResources
	}
	if e.Orig.Proto == header.ProtoTCP {
		switch e.TCPState {
		case tcpstate.FinWait, tcpstate.CloseWait, tcpstate.LastAck, tcpstate.TimeWait, tcpstate.Close:
			return EndOfFlow
		}
	}
	return EndIdle
}
