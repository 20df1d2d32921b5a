package hasync

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/control/hasync/wire"
	"github.com/dpfw/dpfw/packet/header"
)

// pair opens two nodes on loopback, each the other's peer.
func pair(t *testing.T) (a, b *Node) { return pairKeys(t, nil, nil) }

// pairKeys is pair with the nodes' shared keys (nil: none).
func pairKeys(t *testing.T, ka, kb []byte) (a, b *Node) { return pairConf(t, "", ka, kb) }

// pairConf is pair in mode (NoTrack if "") with the nodes' shared keys.
func pairConf(t testing.TB, mode string, ka, kb []byte) (a, b *Node) {
	t.Helper()
	ports := make([]netip.AddrPort, 2)
	for i := range ports {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
		c.Close()
	}
	var err error
	if a, err = New(Config{Mode: mode, Local: ports[0], Peer: ports[1], MaxEntries: 100, Key: ka}); err != nil {
		t.Fatal(err)
	}
	if b, err = New(Config{Mode: mode, Local: ports[1], Peer: ports[0], MaxEntries: 100, Zone: 2, Key: kb}); err != nil {
		t.Fatal(err)
	}
	go a.Receive()
	go b.Receive()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func entry(t testing.TB, src, dst string, proto uint8, sp, dp uint16) conntrack.Entry {
	tu, ok := conntrack.MakeTuple(netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, sp, dp, 0)
	if !ok {
		t.Fatal(src, dst)
	}
	return conntrack.Entry{Orig: tu, Master: -1, ExpiresIn: 30 * time.Second}
}

// waitFor polls until cond holds, for at most 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSyncEvents: a node's NEW, UPDATE and DESTROY events reach the
// peer's external cache as the connections they describe (TCP state,
// flags, timeout, ICMP type and id, both families), in the peer's zone.
func TestSyncEvents(t *testing.T) {
	a, b := pair(t)
	tcp := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoTCP, 40000, 22)
	tcp.TCPState, tcp.ExpiresIn = tcpstate.SynSent, 120*time.Second
	udp := entry(t, "2001:2::1", "2001:2::2", header.ProtoUDP, 5353, 53)
	icmp := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoICMP, 77, uint16(header.ICMPv4Echo)<<8)
	for _, e := range []conntrack.Entry{tcp, udp, icmp} {
		a.OfferEntry(wire.CTNew, &e)
	}
	a.Flush()
	waitFor(t, "three connections", func() bool { return b.External.Len() == 3 })
	tcp.TCPState, tcp.SeenReply, tcp.Assured, tcp.ExpiresIn = tcpstate.Established, true, true, 432000*time.Second
	a.OfferEntry(wire.CTUpdate, &tcp)
	a.OfferEntry(wire.CTDelete, &udp)
	a.Flush()
	waitFor(t, "the update and the destroy", func() bool { return b.External.Len() == 2 })
	got := map[string]conntrack.Entry{}
	for _, s := range b.External.List() {
		if s.Entry.Orig.Zone != 2 {
			t.Errorf("%v: zone %d, want the receiver's 2", s.Entry.Orig, s.Entry.Orig.Zone)
		}
		s.Entry.Orig.Zone = 0
		got[s.Entry.Orig.String()] = s.Entry
	}
	for _, want := range []conntrack.Entry{tcp, icmp} {
		g, ok := got[want.Orig.String()]
		if !ok || g.String() != want.String() {
			t.Errorf("cached\n%s\nwant\n%s", g.String(), want.String())
		}
	}
	if n := a.Stats.MsgsSent.Load(); n != 5 || a.Stats.Datagrams.Load() != 2 || b.Stats.MsgsRecv.Load() != 5 {
		t.Errorf("sent %d messages in %d datagrams, received %d", n, a.Stats.Datagrams.Load(), b.Stats.MsgsRecv.Load())
	}
	if b.Stats.SeqLost.Load() != 0 || b.Stats.SeqBefore.Load() != 0 {
		t.Errorf("sequence: %d lost, %d before", b.Stats.SeqLost.Load(), b.Stats.SeqBefore.Load())
	}
}

// TestSyncControl: a RESYNC request is signalled; heartbeats go out only
// when the link is idle; a sequence gap, malformed and NAT messages, and
// datagrams from elsewhere are counted, not taken.
func TestSyncControl(t *testing.T) {
	a, b := pair(t)
	a.RequestResync()
	select {
	case <-b.ResyncRequests():
	case <-time.After(5 * time.Second):
		t.Fatal("no resync request")
	}
	a.Tick() // the resync just went out: no heartbeat yet
	if a.Stats.MsgsSent.Load() != 1 {
		t.Errorf("a heartbeat right after a message: %d sent", a.Stats.MsgsSent.Load())
	}
	a.lastSend = time.Now().Add(-2 * time.Second)
	a.Tick()
	waitFor(t, "the heartbeat", func() bool { return b.Stats.MsgsRecv.Load() == 2 })

	a.seq += 5 // five messages "lost"
	nat := FromEntry(&conntrack.Entry{Orig: entry(t, "198.18.0.1", "198.19.0.1", header.ProtoUDP, 1, 2).Orig})
	nat.SNAT = 1
	nat.Set(wire.AttrSNATIPv4)
	body, _ := wire.AppendConn(nil, &nat)
	a.queue(wire.Header{Type: wire.CTNew}, body)
	a.queue(wire.Header{Type: wire.CTNew}, []byte{0, 9, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0})
	a.Flush()
	waitFor(t, "the bad messages", func() bool { return b.Stats.MsgsRecv.Load() == 4 })
	if b.Stats.SeqLost.Load() != 5 || b.Stats.Refused[0].Load() != 1 || b.Stats.Malformed[malAttr].Load() != 1 || b.External.Len() != 0 {
		t.Errorf("lost %d, nat %d, malformed %d, cached %d", b.Stats.SeqLost.Load(), b.Stats.Refused[0].Load(),
			b.Stats.Malformed[malAttr].Load(), b.External.Len())
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, net.UDPAddrFromAddrPort(b.cfg.Local))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(wire.AppendHeader(nil, wire.Header{Type: wire.Control, Flags: wire.FlagAlive}, nil))
	waitFor(t, "the foreign datagram", func() bool { return b.Stats.Foreign.Load() == 1 })
}

// lossy forwards datagrams from one address to another, dropping every
// drop-th one: a sync link that loses messages.
func lossy(t *testing.T, to netip.AddrPort, drop int) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dropped := new(atomic.Int64)
	go func() {
		buf := make([]byte, 65536)
		dst := net.UDPAddrFromAddrPort(to)
		for i := 1; ; i++ {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if i%drop == 0 {
				dropped.Add(1)
				continue
			}
			_, _ = c.WriteToUDP(buf[:n], dst)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), dropped
}

// TestFTFWRecovers: over a link that loses one datagram in five, FTFW
// gets every one of 2,000 connections to the peer (NACKs for the gaps,
// resends, heartbeats that reveal a lost tail), and the sender's resend
// queue empties as the peer acknowledges; NOTRACK over the same link
// loses some.
func TestFTFWRecovers(t *testing.T) {
	for _, mode := range []string{FTFW, NoTrack} {
		t.Run(mode, func(t *testing.T) {
			ports := make([]netip.AddrPort, 2)
			for i := range ports {
				c, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				ports[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
				c.Close()
			}
			shim, dropped := lossy(t, ports[1], 5)
			a, err := New(Config{Mode: mode, Window: 20, Local: ports[0], Peer: shim, MaxEntries: 10000, Alive: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			b, err := New(Config{Mode: mode, Window: 20, Local: ports[1], Peer: ports[0], MaxEntries: 10000, Alive: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			go a.Receive()
			go b.Receive()
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
						a.Tick()
						b.Tick()
					}
				}
			}()
			t.Cleanup(func() { close(stop); a.Close(); b.Close() })
			const conns = 2000
			for i := range conns {
				e := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoUDP, uint16(1000+i), 53)
				a.OfferEntry(wire.CTNew, &e)
				if i%50 == 49 {
					a.Flush()
				}
			}
			a.Flush()
			if mode == NoTrack {
				time.Sleep(300 * time.Millisecond)
				if got := b.External.Len(); got == conns || b.Stats.SeqLost.Load() == 0 {
					t.Errorf("NOTRACK over a lossy link: %d of %d connections, %d messages lost", got, conns, b.Stats.SeqLost.Load())
				}
				return
			}
			for end := time.Now().Add(5 * time.Second); b.External.Len() != conns; time.Sleep(time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("%d of %d connections at the peer: dropped %d datagrams, %d NACKs, %d resent, %d ACKs, %d late, %d lost, resend queue %d, overflow %d, restarts %d, malformed %v %v %v %v %v, msgs %d/%d",
						b.External.Len(), conns, dropped.Load(), b.Stats.NacksSent.Load(), a.Stats.Resent.Load(), b.Stats.AcksSent.Load(),
						b.Stats.SeqBefore.Load(), b.Stats.SeqLost.Load(), a.ResendQueueLen(), a.Stats.ResendOverflow.Load(), b.Stats.PeerRestarts.Load(),
						b.Stats.Malformed[0].Load(), b.Stats.Malformed[1].Load(), b.Stats.Malformed[2].Load(), b.Stats.Malformed[3].Load(), b.Stats.Malformed[4].Load(),
						b.Stats.MsgsRecv.Load(), a.Stats.MsgsSent.Load())
				}
			}
			waitFor(t, "the resend queue to empty", func() bool { return a.ResendQueueLen() == 0 })
			if dropped.Load() == 0 || b.Stats.NacksSent.Load() == 0 || a.Stats.Resent.Load() == 0 || b.Stats.AcksSent.Load() == 0 {
				t.Errorf("dropped %d datagrams, %d NACKs, %d resent, %d ACKs", dropped.Load(), b.Stats.NacksSent.Load(),
					a.Stats.Resent.Load(), b.Stats.AcksSent.Load())
			}
			t.Logf("%d datagrams dropped, %d NACKs, %d messages resent, %d ACKs", dropped.Load(), b.Stats.NacksSent.Load(), a.Stats.Resent.Load(), b.Stats.AcksSent.Load())
		})
	}
}

// TestSyncAuth: with a shared key, datagrams carry a MAC and a clock and
// the peer takes them; a datagram with a wrong key or none is refused as
// bad, one replayed (or older than the last taken) as stale, and so is a
// first one whose clock is far from the receiver's.
func TestSyncAuth(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	a, b := pairKeys(t, key, key)
	e := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoUDP, 1000, 53)
	a.OfferEntry(wire.CTNew, &e)
	a.Flush()
	waitFor(t, "the authenticated connection", func() bool { return b.External.Len() == 1 })
	if got, want := a.Stats.BytesSent.Load(), uint64(len(encoded(t, &e))+wire.HeaderLen+AuthLen); got != want {
		t.Errorf("sent %d bytes; want the message and the %d-byte trailer, %d", got, AuthLen, want)
	}

	// Datagrams from the peer's address (another port passes the address
	// check): sealed with the key, replayed, sealed with another key, not
	// sealed.
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(b.cfg.Local))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	alive := wire.AppendHeader(nil, wire.Header{Type: wire.Control, Flags: wire.FlagAlive}, nil)
	good := newAuth(key).seal(append([]byte(nil), alive...), time.Now())
	other := newAuth([]byte("another key, 16+")).seal(append([]byte(nil), alive...), time.Now())
	recv := b.Stats.MsgsRecv.Load()
	for _, d := range [][]byte{good, good, other, alive} {
		c.Write(d)
	}
	waitFor(t, "the refusals", func() bool { return b.Stats.AuthBad.Load()+b.Stats.AuthStale.Load() == 3 })
	if b.Stats.MsgsRecv.Load() != recv+1 || b.Stats.AuthStale.Load() != 1 || b.Stats.AuthBad.Load() != 2 {
		t.Errorf("took %d messages (want 1), refused %d stale (want the replay), %d bad (want the wrong key and the unsealed)",
			b.Stats.MsgsRecv.Load()-recv, b.Stats.AuthStale.Load(), b.Stats.AuthBad.Load())
	}

	// A node that has taken nothing yet refuses a first datagram from
	// two minutes ago; an unauthenticated node refuses the trailer as
	// malformed.
	_, y := pairKeys(t, key, key)
	old := newAuth(key).seal(append([]byte(nil), alive...), time.Now().Add(-2*time.Minute))
	d, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(y.cfg.Local))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write(old)
	waitFor(t, "the old datagram refused", func() bool { return y.Stats.AuthStale.Load() == 1 })
	p, q := pairKeys(t, key, nil)
	p.OfferEntry(wire.CTNew, &e)
	p.Flush()
	waitFor(t, "the trailer refused", func() bool { return q.Stats.Malformed[malTruncated].Load()+q.Stats.Malformed[malSize].Load() == 1 })
}

// encoded is e's CT message body.
func encoded(t *testing.T, e *conntrack.Entry) []byte {
	c := FromEntry(e)
	b, err := wire.AppendConn(nil, &c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReceiveAllocs: taking a CT message for a connection the external
// cache holds allocates nothing (the backup's steady state: updates).
func TestReceiveAllocs(t *testing.T) {
	_, b := pair(t)
	e := entry(t, "198.18.0.1", "198.19.0.1", header.ProtoTCP, 40000, 443)
	e.TCPState = tcpstate.Established
	body := encoded(t, &e)
	h := wire.Header{Type: wire.CTUpdate}
	now := time.Now()
	b.message(&h, body, now)
	if b.External.Len() != 1 {
		t.Fatalf("cached %d connections; want 1", b.External.Len())
	}
	if n := testing.AllocsPerRun(1000, func() { b.message(&h, body, now) }); n != 0 {
		t.Errorf("a CT message for a cached connection allocates %v times", n)
	}
}
