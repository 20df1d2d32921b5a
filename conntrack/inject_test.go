package conntrack_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet/header"
)

func injected(t *testing.T, src, dst string, proto uint8, sp, dp uint16) conntrack.Entry {
	tu, ok := conntrack.MakeTuple(netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, sp, dp, 0)
	if !ok {
		t.Fatal(src, dst)
	}
	return conntrack.Entry{Orig: tu, SeenReply: true, Assured: true, ExpiresIn: time.Hour, Master: -1}
}

// TestInject: a connection installed from the peer (windows unknown) is
// ESTABLISHED here, server side first, without tcp_loose, where the same
// segments of an unknown connection are INVALID; its timeout, flags and
// state are the peer's; installing it again replaces it; a UDP reply is
// ESTABLISHED; a TCP entry without a state is refused; nothing allocates.
func TestInject(t *testing.T) {
	strict := tcpstate.Options{}
	// Unknown: a mid-stream segment is INVALID without tcp_loose.
	run(t, newTracker(strict), []step{
		{"server data, mid-stream", seg(t, srv, cli, 22, 40000, "PA", 5000, 9000, 500, 100), conntrack.Invalid, 0},
	})
	tr := newTracker(strict)
	e := injected(t, cli, srv, header.ProtoTCP, 40000, 22)
	e.TCPState = tcpstate.Established
	if created, err := tr.Inject(&e); !created || err != nil {
		t.Fatalf("Inject: %v %v", created, err)
	}
	run(t, tr, []step{
		{"server data, first", seg(t, srv, cli, 22, 40000, "PA", 5000, 9000, 500, 100), conntrack.Established, tcpstate.Established},
		{"client ACK", seg(t, cli, srv, 40000, 22, "A", 9000, 5100, 500, 0), conntrack.Established, tcpstate.Established},
		{"client FIN", seg(t, cli, srv, 40000, 22, "FA", 9000, 5100, 500, 0), conntrack.Established, tcpstate.FinWait},
	})
	es := entries(tr)
	if len(es) != 1 || !es[0].Assured || !es[0].SeenReply {
		t.Fatalf("entries %v", es)
	}
	// Installed again (an UPDATE from the peer): replaced, not doubled.
	e.TCPState, e.ExpiresIn = tcpstate.TimeWait, 90*time.Second
	if created, err := tr.Inject(&e); created || err != nil {
		t.Fatalf("Inject again: %v %v", created, err)
	}
	if es = entries(tr); len(es) != 1 || es[0].TCPState != tcpstate.TimeWait || es[0].ExpiresIn != 90*time.Second {
		t.Fatalf("after the update: %v", es)
	}
	if n := tr.Stats.TCPByState[tcpstate.TimeWait]; n != 1 || tr.Stats.TCPByState[tcpstate.FinWait] != 0 {
		t.Errorf("per-state counts: TIME_WAIT %d, FIN_WAIT %d", n, tr.Stats.TCPByState[tcpstate.FinWait])
	}
	u := injected(t, cli, srv, header.ProtoUDP, 5353, 53)
	if _, err := tr.Inject(&u); err != nil {
		t.Fatal(err)
	}
	run(t, tr, []step{{"UDP reply", udp(t, srv, cli, 53, 5353), conntrack.Established, 0}})
	bad := injected(t, cli, srv, header.ProtoTCP, 1, 2)
	if _, err := tr.Inject(&bad); err != conntrack.ErrInjectState {
		t.Errorf("a TCP entry without a state: %v", err)
	}
	e2 := injected(t, cli, srv, header.ProtoTCP, 40001, 22)
	e2.TCPState = tcpstate.Established
	if n := testing.AllocsPerRun(100, func() { _, _ = tr.Inject(&e2) }); n != 0 {
		t.Errorf("Inject allocates %v times", n)
	}
}

func entries(tr *conntrack.Tracker) []conntrack.Entry {
	var out []conntrack.Entry
	for i := range uint32(tr.Table.Cap()) {
		if e, ok := tr.Entry(i); ok && e.Orig.Proto == header.ProtoTCP {
			out = append(out, e)
		}
	}
	return out
}
