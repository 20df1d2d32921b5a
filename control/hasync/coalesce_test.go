package hasync

import (
	"testing"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet/header"
)

// TestCoalescer: within an interval a connection's events become its
// latest state: NEW+UPDATEs a NEW, UPDATEs the last UPDATE, …+DESTROY a
// DESTROY, and NEW…DESTROY nothing; destroyed then opened again, a NEW.
func TestCoalescer(t *testing.T) {
	ev := func(typ conntrack.EventType, e conntrack.Entry, st tcpstate.State) *conntrack.SyncRecord {
		return &conntrack.SyncRecord{Type: typ, Orig: e.Orig, TCPState: st}
	}
	a := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoTCP, 1, 80)
	b := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoTCP, 2, 80)
	c := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoTCP, 3, 80)
	d := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoTCP, 4, 80)
	co := NewCoalescer()
	for _, e := range []*conntrack.SyncRecord{
		ev(conntrack.EventNew, a, tcpstate.SynSent), ev(conntrack.EventUpdate, a, tcpstate.Established), // a: NEW ESTABLISHED
		ev(conntrack.EventUpdate, b, tcpstate.FinWait), ev(conntrack.EventUpdate, b, tcpstate.TimeWait), // b: UPDATE TIME_WAIT
		ev(conntrack.EventNew, c, tcpstate.SynSent), ev(conntrack.EventDestroy, c, tcpstate.Close), // c: nothing
		ev(conntrack.EventUpdate, d, tcpstate.Close), ev(conntrack.EventDestroy, d, tcpstate.Close), // d: DELETE
		ev(conntrack.EventNew, d, tcpstate.SynSent), // d again: NEW
	} {
		co.Add(e)
	}
	var got []string
	for _, p := range co.order {
		if !p.gone {
			got = append(got, p.t.String()+" "+p.r.TCPState.String())
		}
	}
	want := []string{"ct-new ESTABLISHED", "ct-update TIME_WAIT", "ct-new SYN_SENT"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("coalesced to %v; want %v", got, want)
	}
	if co.Merged != 5 {
		t.Errorf("merged %d events; want 5", co.Merged)
	}
}
