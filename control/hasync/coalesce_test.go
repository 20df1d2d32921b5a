package hasync

import (
	"net"
	"net/netip"
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

// BenchmarkSyncPath is the sync goroutine's work per connection event: the
// coalescer takes a worker's records (a short TCP connection's life, 9
// events: NEW, 7 state changes, DESTROY a pass later, as in the churnmix
// workload), and each flush encodes the merged messages into datagrams
// sent (FTFW, to a socket that reads nothing: the send's cost included,
// the peer's not). Reported per event: how many events a second one sync
// goroutine keeps up with.
func BenchmarkSyncPath(b *testing.B) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	a, err := New(Config{Mode: FTFW, Local: netip.MustParseAddrPort("127.0.0.1:0"), Peer: sink.LocalAddr().(*net.UDPAddr).AddrPort(), MaxEntries: 100})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	const conns = 2048
	recs := make([]conntrack.SyncRecord, 0, conns*9)
	states := []tcpstate.State{tcpstate.SynSent, tcpstate.SynRecv, tcpstate.Established, tcpstate.Established,
		tcpstate.FinWait, tcpstate.CloseWait, tcpstate.LastAck, tcpstate.TimeWait}
	for i := range conns {
		e := entry(b, "198.18.0.1", "198.19.0.1", header.ProtoTCP, uint16(1024+i), 80)
		for k, st := range states {
			typ := conntrack.EventUpdate
			if k == 0 {
				typ = conntrack.EventNew
			}
			recs = append(recs, conntrack.SyncRecord{Orig: e.Orig, Type: typ, TCPState: st, ExpiresMs: 120000})
		}
	}
	co := NewCoalescer()
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for b.Loop() {
		// A pass: each connection's DESTROY (of the last pass) and its new life.
		for i := 0; i < len(recs); i += len(states) {
			d := recs[i]
			d.Type = conntrack.EventDestroy
			co.Add(&d)
			for k := range states {
				co.Add(&recs[i+k])
			}
		}
		co.Flush(a)
		a.Flush()
		events += conns * (len(states) + 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
	b.ReportMetric(0, "ns/op")
}
