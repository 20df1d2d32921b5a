package conntrack_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const (
	cli  = "198.18.0.1"
	srv  = "198.18.1.1"
	cli6 = "2001:db8::1"
	srv6 = "2001:db8::2"
)

func ipLayer(src, dst string, proto layers.IPProtocol) gopacket.SerializableLayer {
	s, d := net.ParseIP(src), net.ParseIP(dst)
	if s.To4() != nil {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: s.To4(), DstIP: d.To4()}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: s, DstIP: d}
}

func eth(src string) *layers.Ethernet {
	t := layers.EthernetTypeIPv4
	if net.ParseIP(src).To4() == nil {
		t = layers.EthernetTypeIPv6
	}
	return &layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: t}
}

func decode(t *testing.T, b []byte) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	packet.Decode(b, p)
	if !p.IsIP() {
		t.Fatalf("test frame did not decode: %v", p)
	}
	return p
}

// seg builds a TCP segment; flags is a string of S, A, F, R, P.
func seg(t *testing.T, src, dst string, sport, dport uint16, flags string, seq, ack uint32, win uint16, payload int, opts ...layers.TCPOption) *packet.Parsed {
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: win,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P"), Options: opts}
	return decode(t, pcapgen.Frame(eth(src), ipLayer(src, dst, layers.IPProtocolTCP), tc, gopacket.Payload(make([]byte, payload))))
}

func udp(t *testing.T, src, dst string, sport, dport uint16) *packet.Parsed {
	return decode(t, pcapgen.Frame(eth(src), ipLayer(src, dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, gopacket.Payload([]byte("x"))))
}

func icmpEcho(t *testing.T, src, dst string, typ uint8, id uint16) *packet.Parsed {
	if net.ParseIP(src).To4() == nil {
		return decode(t, pcapgen.Frame(eth(src), ipLayer(src, dst, layers.IPProtocolICMPv6),
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}, &layers.ICMPv6Echo{Identifier: id, SeqNumber: 1}))
	}
	return decode(t, pcapgen.Frame(eth(src), ipLayer(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1}))
}

// icmpErr builds an ICMP port unreachable from `from` to `to` quoting q's IP
// packet (IP header + 8 bytes).
func icmpErr(t *testing.T, from, to string, q *packet.Parsed) *packet.Parsed {
	quote := q.Buf[q.L3Off:min(int(q.L4Off)+8, int(q.L3End))]
	return decode(t, pcapgen.Frame(eth(from), ipLayer(from, to, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quote)))
}

func newTracker(opts tcpstate.Options) *conntrack.Tracker {
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 1024, Timeouts: conntrack.DefaultTimeouts(), TCP: opts, Seed: 7})
	tr.SetNow(int64(time.Hour))
	return tr
}

type step struct {
	name  string
	p     *packet.Parsed
	state conntrack.State
	tcp   tcpstate.State // expected TCP state after the packet (if checked)
}

func run(t *testing.T, tr *conntrack.Tracker, steps []step) {
	t.Helper()
	for _, s := range steps {
		r := tr.Track(s.p, 0)
		if r.State != s.state {
			t.Fatalf("%s: state %v (reason %v); want %v", s.name, r.State, r.Reason, s.state)
		}
		if s.tcp != 0 && r.State != conntrack.Invalid {
			if got := tr.Table.Conn(r.Conn).TCP.State; got != s.tcp {
				t.Fatalf("%s: TCP state %v; want %v", s.name, got, s.tcp)
			}
		}
	}
}

var wscale = layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}

func TestTCPLifecycle(t *testing.T) {
	for _, fam := range []struct{ name, c, s string }{{"ipv4", cli, srv}, {"ipv6", cli6, srv6}} {
		t.Run(fam.name, func(t *testing.T) {
			tr := newTracker(tcpstate.Options{Loose: true})
			c, s := fam.c, fam.s
			E, N := conntrack.Established, conntrack.New
			run(t, tr, []step{
				{"SYN", seg(t, c, s, 40000, 22, "S", 1000, 0, 64240, 0, wscale), N, tcpstate.SynSent},
				{"retransmitted SYN", seg(t, c, s, 40000, 22, "S", 1000, 0, 64240, 0, wscale), N, tcpstate.SynSent},
				{"SYN/ACK", seg(t, s, c, 22, 40000, "SA", 5000, 1001, 65160, 0, wscale), E, tcpstate.SynRecv},
				{"ACK", seg(t, c, s, 40000, 22, "A", 1001, 5001, 502, 0), E, tcpstate.Established},
				{"data c>s", seg(t, c, s, 40000, 22, "PA", 1001, 5001, 502, 100), E, tcpstate.Established},
				{"data s>c", seg(t, s, c, 22, 40000, "PA", 5001, 1101, 509, 1000), E, tcpstate.Established},
				{"ack", seg(t, c, s, 40000, 22, "A", 1101, 6001, 502, 0), E, tcpstate.Established},
				{"FIN c>s", seg(t, c, s, 40000, 22, "FA", 1101, 6001, 502, 0), E, tcpstate.FinWait},
				{"ACK of FIN", seg(t, s, c, 22, 40000, "A", 6001, 1102, 509, 0), E, tcpstate.CloseWait},
				{"FIN s>c", seg(t, s, c, 22, 40000, "FA", 6001, 1102, 509, 0), E, tcpstate.LastAck},
				{"last ACK", seg(t, c, s, 40000, 22, "A", 1102, 6002, 502, 0), E, tcpstate.TimeWait},
				{"new SYN reuses the ports from TIME_WAIT", seg(t, c, s, 40000, 22, "S", 90000, 0, 64240, 0), N, tcpstate.SynSent},
			})
			if tr.Table.Len() != 1 {
				t.Errorf("entries: %d; want 1 (the reopened connection)", tr.Table.Len())
			}
		})
	}
}

func TestTCPInvalid(t *testing.T) {
	I := conntrack.Invalid
	tests := []struct {
		name   string
		loose  bool
		setup  func(t *testing.T) []*packet.Parsed
		p      func(t *testing.T) *packet.Parsed
		reason string
	}{
		{"SYN/ACK without connection", true, nil,
			func(t *testing.T) *packet.Parsed { return seg(t, srv, cli, 22, 40000, "SA", 1, 1, 100, 0) }, "tcp_cannot_start"},
		{"RST without connection", true, nil,
			func(t *testing.T) *packet.Parsed { return seg(t, srv, cli, 22, 40000, "R", 1, 0, 0, 0) }, "tcp_cannot_start"},
		{"ACK without connection, loose off", false, nil,
			func(t *testing.T) *packet.Parsed { return seg(t, cli, srv, 40000, 22, "A", 1, 1, 100, 0) }, "tcp_cannot_start"},
		{"SYN+FIN", true, nil,
			func(t *testing.T) *packet.Parsed { return seg(t, cli, srv, 40000, 22, "SF", 1, 0, 100, 0) }, "tcp_flags"},
		{"no flags", true, nil,
			func(t *testing.T) *packet.Parsed { return seg(t, cli, srv, 40000, 22, "", 1, 0, 100, 0) }, "tcp_flags"},
		{"ACK before SYN/ACK", true, handshake(1),
			func(t *testing.T) *packet.Parsed { return seg(t, cli, srv, 40000, 22, "A", 1001, 5001, 502, 0) }, "tcp_transition"},
		{"data far past the window", true, handshake(3),
			func(t *testing.T) *packet.Parsed {
				return seg(t, cli, srv, 40000, 22, "PA", 1001+10_000_000, 5001, 502, 100)
			}, "tcp_seq_above_window"},
		{"ACK of data never sent", true, handshake(3),
			func(t *testing.T) *packet.Parsed {
				return seg(t, cli, srv, 40000, 22, "A", 1001, 5001+1_000_000, 502, 0)
			}, "tcp_ack_above_window"},
		{"RST below the max ACK", true, handshake(4),
			func(t *testing.T) *packet.Parsed { return seg(t, srv, cli, 22, 40000, "R", 4000, 0, 0, 0) }, "tcp_rst_invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tcpstate.Options{Loose: tt.loose})
			if tt.setup != nil {
				for _, p := range tt.setup(t) {
					if r := tr.Track(p, 0); r.State == I {
						t.Fatalf("setup packet invalid: %v", r.Reason)
					}
				}
			}
			before := tr.Table.Len()
			r := tr.Track(tt.p(t), 0)
			if r.State != I || r.Reason.String() != tt.reason {
				t.Errorf("got %v reason %v; want INVALID reason %s", r.State, r.Reason, tt.reason)
			}
			if tr.Table.Len() != before {
				t.Errorf("an INVALID packet changed the table: %d → %d entries", before, tr.Table.Len())
			}
		})
	}
}

// handshake returns the first n packets of a connection cli:40000 > srv:22
// (SYN, SYN/ACK, ACK, data s>c).
func handshake(n int) func(t *testing.T) []*packet.Parsed {
	return func(t *testing.T) []*packet.Parsed {
		all := []*packet.Parsed{
			seg(t, cli, srv, 40000, 22, "S", 1000, 0, 64240, 0),
			seg(t, srv, cli, 22, 40000, "SA", 5000, 1001, 65160, 0),
			seg(t, cli, srv, 40000, 22, "A", 1001, 5001, 502, 0),
			seg(t, srv, cli, 22, 40000, "PA", 5001, 1001, 509, 100),
		}
		return all[:n]
	}
}

// TestTCPIgnored: what Linux 6.1 and later ignore (pass as ESTABLISHED
// without changing the connection) instead of marking INVALID, and the
// SYN/ACK re-initialisation rule (only a SYN re-initializes a direction).
func TestTCPIgnored(t *testing.T) {
	E, I := conntrack.Established, conntrack.Invalid
	t.Run("overly delayed data and ACK", func(t *testing.T) {
		tr := newTracker(tcpstate.Options{Loose: true})
		run(t, tr, append(steps(handshake(3)(t)),
			step{"data 2^30 below the window", seg(t, cli, srv, 40000, 22, "PA", 1001+3<<30, 5001, 502, 100), E, tcpstate.Established},
			step{"ACK 2^30 below", seg(t, srv, cli, 22, 40000, "A", 5001, 1001+3<<30, 509, 0), E, tcpstate.Established},
			step{"data in window still fine", seg(t, cli, srv, 40000, 22, "PA", 1001, 5001, 502, 100), E, tcpstate.Established},
		))
	})
	t.Run("overshoot within the max window, then its ACK", func(t *testing.T) {
		tr := newTracker(tcpstate.Options{Loose: true})
		run(t, tr, append(steps(handshake(3)(t)),
			// The server's window is 65160 (no scaling): 1001+65160 is
			// its end; 500 bytes more overshoot by less than the window.
			step{"data overshooting the window", seg(t, cli, srv, 40000, 22, "PA", 1001+65160-100, 5001, 502, 600), E, tcpstate.Established},
			step{"the server ACKs it", seg(t, srv, cli, 22, 40000, "A", 5001, 1001+65160+500, 509, 0), E, tcpstate.Established},
		))
	})
	t.Run("second SYN/ACK with a higher ISN", func(t *testing.T) {
		tr := newTracker(tcpstate.Options{Loose: true})
		run(t, tr, []step{
			{"SYN", seg(t, cli, srv, 40000, 22, "S", 1000, 0, 64240, 0), conntrack.New, tcpstate.SynSent},
			{"SYN/ACK", seg(t, srv, cli, 22, 40000, "SA", 5000, 1001, 65160, 0), E, tcpstate.SynRecv},
			{"second SYN/ACK, ignored", seg(t, srv, cli, 22, 40000, "SA", 900000, 1001, 65160, 0), E, tcpstate.SynRecv},
			{"data at the second ISN", seg(t, srv, cli, 22, 40000, "PA", 900001, 1001, 65160, 50), I, 0},
		})
	})
}

func steps(ps []*packet.Parsed) []step {
	out := make([]step, len(ps))
	for i, p := range ps {
		out[i] = step{fmt.Sprintf("handshake %d", i), p, conntrack.Established, 0}
		if i == 0 {
			out[i].state = conntrack.New
		}
	}
	return out
}

func TestTCPRst(t *testing.T) {
	tr := newTracker(tcpstate.Options{Loose: true})
	for _, p := range handshake(3)(t) {
		tr.Track(p, 0)
	}
	r := tr.Track(seg(t, srv, cli, 22, 40000, "R", 5001, 0, 0, 0), 0)
	if r.State != conntrack.Established || tr.Table.Conn(r.Conn).TCP.State != tcpstate.Close {
		t.Fatalf("in-window RST: %v, TCP %v", r.State, tr.Table.Conn(r.Conn).TCP.State)
	}
	// A RST as the only reply to a SYN deletes the connection.
	tr2 := newTracker(tcpstate.Options{Loose: true})
	tr2.Track(seg(t, cli, srv, 40001, 23, "S", 1, 0, 100, 0), 0)
	r = tr2.Track(seg(t, srv, cli, 23, 40001, "RA", 0, 2, 0, 0), 0)
	if r.State != conntrack.Established || tr2.Table.Len() != 0 {
		t.Errorf("RST answering a SYN: state %v, %d entries; want ESTABLISHED and 0", r.State, tr2.Table.Len())
	}
}

// TestTCPCrossedOutOfWindow: an assured connection whose ends send RSTs
// (or FINs) out of window both ways is out of sync with the tracker; both
// are INVALID, and the second shortens the connection's 5-day timeout to
// the unacknowledged-data timeout (5 minutes), as nf_tcp_handle_invalid
// does. One direction alone, or a connection not assured, keeps its own.
func TestTCPCrossedOutOfWindow(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steps int // of the handshake: 4 is assured
		both  bool
		want  time.Duration
	}{
		{"crossed RSTs", 4, true, 5 * time.Minute},
		{"one RST", 4, false, 5 * 24 * time.Hour},
	} {
		tr := newTracker(tcpstate.Options{Loose: true})
		var r conntrack.Result
		for _, p := range handshake(tt.steps)(t) {
			r = tr.Track(p, 0)
		}
		r = tr.Track(seg(t, cli, srv, 40000, 22, "A", 1001, 5101, 502, 0), 0) // nothing unacknowledged
		c := tr.Table.Conn(r.Conn)
		if got := tr.ExpiresIn(c); got != 5*24*time.Hour {
			t.Fatalf("%s: expires in %v before the RSTs", tt.name, got)
		}
		if !c.Assured() {
			t.Fatalf("%s: not assured after the handshake", tt.name)
		}
		if got := tr.Track(seg(t, cli, srv, 40000, 22, "R", 1001+1<<20, 0, 0, 0), 0); got.State != conntrack.Invalid {
			t.Fatalf("%s: RST out of window: %v", tt.name, got.State)
		}
		if tt.both {
			if got := tr.Track(seg(t, srv, cli, 22, 40000, "R", 5101+1<<20, 0, 0, 0), 0); got.State != conntrack.Invalid {
				t.Fatalf("%s: answering RST out of window: %v", tt.name, got.State)
			}
		}
		if got := tr.ExpiresIn(c); got != tt.want {
			t.Errorf("%s: expires in %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestTCPSimultaneousOpen(t *testing.T) {
	tr := newTracker(tcpstate.Options{})
	run(t, tr, []step{
		{"SYN a>b", seg(t, cli, srv, 5000, 6000, "S", 100, 0, 1000, 0), conntrack.New, tcpstate.SynSent},
		{"SYN b>a", seg(t, srv, cli, 6000, 5000, "S", 900, 0, 1000, 0), conntrack.Established, tcpstate.SynSent2},
		{"SYN/ACK a>b", seg(t, cli, srv, 5000, 6000, "SA", 100, 901, 1000, 0), conntrack.Established, tcpstate.SynRecv},
		{"ACK b>a", seg(t, srv, cli, 6000, 5000, "A", 901, 101, 1000, 0), conntrack.Established, tcpstate.Established},
	})
}

func TestMidStreamPickup(t *testing.T) {
	tr := newTracker(tcpstate.Options{Loose: true})
	run(t, tr, []step{
		{"ACK of an old connection", seg(t, cli, srv, 40000, 22, "PA", 777, 999, 500, 10), conntrack.New, tcpstate.Established},
		{"its reply", seg(t, srv, cli, 22, 40000, "A", 999, 787, 500, 0), conntrack.Established, tcpstate.Established},
	})
}

func TestUDP(t *testing.T) {
	tr := newTracker(tcpstate.Options{})
	run(t, tr, []step{
		{"first", udp(t, cli, srv, 5353, 53), conntrack.New, 0},
		{"again before a reply", udp(t, cli, srv, 5353, 53), conntrack.New, 0},
		{"reply", udp(t, srv, cli, 53, 5353), conntrack.Established, 0},
		{"after the reply", udp(t, cli, srv, 5353, 53), conntrack.Established, 0},
	})
	// Unreplied UDP times out after 30 s: the next packet is NEW again.
	tr2 := newTracker(tcpstate.Options{})
	tr2.Track(udp(t, cli, srv, 1, 2), 0)
	tr2.SetNow(tr2.Now() + int64(31*time.Second))
	if r := tr2.Track(udp(t, srv, cli, 2, 1), 0); r.State != conntrack.New {
		t.Errorf("reply after the unreplied timeout: %v; want NEW (a new flow)", r.State)
	}
	// As nf_conntrack_udp_packet: a replied flow still active 2 s after
	// its first packet is a stream (120 s, assured); before that, and for
	// the reply itself, the unreplied timeout (30 s) applies.
	tr3 := newTracker(tcpstate.Options{})
	tr3.Track(udp(t, cli, srv, 1, 2), 0)
	tr3.Track(udp(t, srv, cli, 2, 1), 0)
	tr3.SetNow(tr3.Now() + int64(3*time.Second))
	r := tr3.Track(udp(t, cli, srv, 1, 2), 0)
	if c := tr3.Table.Conn(r.Conn); !c.Assured() || tr3.ExpiresIn(c) != 120*time.Second {
		t.Errorf("replied flow active after 3 s: assured %v, expires in %v; want assured, 120 s", c.Assured(), tr3.ExpiresIn(c))
	}
	tr3.SetNow(tr3.Now() + int64(100*time.Second))
	if r := tr3.Track(udp(t, cli, srv, 1, 2), 0); r.State != conntrack.Established {
		t.Errorf("stream after 100 s: %v; want ESTABLISHED", r.State)
	}
	tr4 := newTracker(tcpstate.Options{})
	tr4.Track(udp(t, cli, srv, 1, 2), 0)
	tr4.Track(udp(t, srv, cli, 2, 1), 0)
	r = tr4.Track(udp(t, cli, srv, 1, 2), 0)
	if c := tr4.Table.Conn(r.Conn); c.Assured() || tr4.ExpiresIn(c) != 30*time.Second {
		t.Errorf("replied flow within 2 s: assured %v, expires in %v; want unassured, 30 s", c.Assured(), tr4.ExpiresIn(c))
	}
}

// assureUDP makes UDP flow sport→53 a stream: query, answer, and a query
// 3 s later (the tracker's clock moves on).
func assureUDP(t *testing.T, tr *conntrack.Tracker, sport uint16) {
	t.Helper()
	tr.Track(udp(t, cli, srv, sport, 53), 0)
	tr.Track(udp(t, srv, cli, 53, sport), 0)
	tr.SetNow(tr.Now() + int64(3*time.Second))
	if r := tr.Track(udp(t, cli, srv, sport, 53), 0); !tr.Table.Conn(r.Conn).Assured() {
		t.Fatalf("UDP flow %d not assured", sport)
	}
}

func TestZonesSeparateFlows(t *testing.T) {
	tr := newTracker(tcpstate.Options{})
	p := udp(t, cli, srv, 1, 2)
	tr.Track(p, 0)
	if r := tr.Track(udp(t, srv, cli, 2, 1), 1); r.State != conntrack.New {
		t.Errorf("a reply on another link: %v; want NEW", r.State)
	}
}

func TestICMP(t *testing.T) {
	for _, fam := range []struct {
		name, c, s string
		req, rep   uint8
	}{{"icmp", cli, srv, 8, 0}, {"icmpv6", cli6, srv6, 128, 129}} {
		t.Run(fam.name, func(t *testing.T) {
			tr := newTracker(tcpstate.Options{})
			run(t, tr, []step{
				{"echo reply without request", icmpEcho(t, fam.s, fam.c, fam.rep, 9), conntrack.Invalid, 0},
				{"echo request", icmpEcho(t, fam.c, fam.s, fam.req, 7), conntrack.New, 0},
				{"echo reply", icmpEcho(t, fam.s, fam.c, fam.rep, 7), conntrack.Established, 0},
				{"reply with another id", icmpEcho(t, fam.s, fam.c, fam.rep, 8), conntrack.Invalid, 0},
				// netfilter's ICMP tuple holds the type: a request the
				// other way with the same id is a connection of its own.
				{"request from the server, same id", icmpEcho(t, fam.s, fam.c, fam.req, 7), conntrack.New, 0},
				{"its reply", icmpEcho(t, fam.c, fam.s, fam.rep, 7), conntrack.Established, 0},
			})
			if n := tr.Table.Len(); n != 2 {
				t.Errorf("entries: %d; want 2 (one per direction's echo)", n)
			}
		})
	}
}

func TestICMPErrorRelated(t *testing.T) {
	tr := newTracker(tcpstate.Options{})
	q := udp(t, cli, srv, 5353, 53)
	tr.Track(q, 0)
	n := tr.Table.Len()
	if r := tr.Track(icmpErr(t, srv, cli, q), 0); r.State != conntrack.Related {
		t.Fatalf("port unreachable for a tracked flow: %v (%v); want RELATED", r.State, r.Reason)
	}
	other := udp(t, cli, srv, 1111, 53)
	if r := tr.Track(icmpErr(t, srv, cli, other), 0); r.State != conntrack.Invalid || r.Reason != conntrack.InvalidICMPUnknownFlow {
		t.Errorf("error quoting an unknown flow: %v %v; want INVALID icmp_error_unknown_flow", r.State, r.Reason)
	}
	if r := tr.Track(icmpErr(t, srv, "198.18.9.9", q), 0); r.State != conntrack.Invalid {
		t.Errorf("error sent to someone other than the quoted sender: %v; want INVALID", r.State)
	}
	if tr.Table.Len() != n {
		t.Errorf("ICMP errors created entries: %d → %d", n, tr.Table.Len())
	}
}

func TestEarlyDropAndFull(t *testing.T) {
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 4, Timeouts: conntrack.DefaultTimeouts(), Seed: 1})
	tr.SetNow(int64(time.Hour))
	for i := uint16(0); i < 4; i++ {
		if r := tr.Track(udp(t, cli, srv, 1000+i, 53), 0); r.State != conntrack.New {
			t.Fatalf("flow %d: %v", i, r.State)
		}
	}
	if r := tr.Track(udp(t, cli, srv, 2000, 53), 0); r.Full || r.State != conntrack.New {
		t.Fatalf("fifth flow with unassured entries present: %+v; want NEW after an early drop", r)
	}
	if tr.Stats.EarlyDrops != 1 {
		t.Errorf("early drops %d; want 1", tr.Stats.EarlyDrops)
	}
	// Assure every entry (replies): now nothing may be evicted.
	tr2 := conntrack.NewTracker(conntrack.Config{Capacity: 2, Timeouts: conntrack.DefaultTimeouts(), Seed: 1})
	tr2.SetNow(int64(time.Hour))
	for i := uint16(0); i < 2; i++ {
		assureUDP(t, tr2, 1000+i)
	}
	if r := tr2.Track(udp(t, cli, srv, 3000, 53), 0); !r.Full {
		t.Errorf("new flow into a table of assured flows: %+v; want Full", r)
	}
	if tr2.Stats.TableFullDrops != 1 {
		t.Errorf("table-full drops %d; want 1", tr2.Stats.TableFullDrops)
	}
}

func TestReap(t *testing.T) {
	tr := newTracker(tcpstate.Options{})
	for i := uint16(0); i < 100; i++ {
		tr.Track(udp(t, cli, srv, 1000+i, 53), 0)
	}
	tr.SetNow(tr.Now() + int64(31*time.Second))
	n := 0
	for i := 0; i < 1024/64+1; i++ {
		n += tr.Reap(64)
	}
	if n != 100 || tr.Table.Len() != 0 || tr.Stats.Expired != 100 {
		t.Errorf("reaped %d, %d left, expired counter %d; want 100, 0, 100", n, tr.Table.Len(), tr.Stats.Expired)
	}
	if tr.Stats.ByProto[conntrack.ProtoClassUDP] != 0 {
		t.Errorf("UDP entry count %d after reaping; want 0", tr.Stats.ByProto[conntrack.ProtoClassUDP])
	}
}

func TestTrackNoAllocs(t *testing.T) {
	tr := newTracker(tcpstate.Options{Loose: true})
	hs := handshake(4)(t)
	for _, p := range hs {
		tr.Track(p, 0)
	}
	data := hs[3]
	if n := testing.AllocsPerRun(1000, func() { tr.Track(data, 0) }); n != 0 {
		t.Errorf("Track allocates %v times; want 0", n)
	}
}

func TestICMPv6NeighbourDiscoveryUntracked(t *testing.T) {
	tr := newTracker(tcpstate.Options{})
	ns := decode(t, pcapgen.Frame(eth(cli6), ipLayer(cli6, srv6, layers.IPProtocolICMPv6),
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(135, 0)}, gopacket.Payload(make([]byte, 20))))
	if r := tr.Track(ns, 0); r.State != conntrack.Untracked || tr.Table.Len() != 0 {
		t.Errorf("neighbour solicitation: %v, %d entries; want UNTRACKED and none", r.State, tr.Table.Len())
	}
}

// The NEW rate cap refuses connections over the rate (no entry left),
// never touches packets of existing connections, and refills with time.
func TestNewRateCap(t *testing.T) {
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 1024, Timeouts: conntrack.DefaultTimeouts(), Seed: 1, NewPerSecond: 10, NewBurst: 2})
	now := int64(time.Hour)
	tr.SetNow(now)
	for i := uint16(0); i < 2; i++ {
		if r := tr.Track(udp(t, cli, srv, 1000+i, 53), 0); r.State != conntrack.New || r.Limited {
			t.Fatalf("flow %d within the burst: %+v", i, r)
		}
	}
	if r := tr.Track(udp(t, cli, srv, 1002, 53), 0); !r.Limited {
		t.Fatalf("third new flow: %+v; want Limited", r)
	}
	if r := tr.Track(udp(t, srv, cli, 53, 1000), 0); r.State != conntrack.Established {
		t.Fatalf("reply of an existing flow: %+v; want ESTABLISHED", r)
	}
	if tr.Table.Len() != 2 || tr.Stats.RateLimited != 1 {
		t.Fatalf("%d entries, %d rate-limited; want 2, 1", tr.Table.Len(), tr.Stats.RateLimited)
	}
	tr.SetNow(now + int64(100*time.Millisecond))
	if r := tr.Track(udp(t, cli, srv, 1003, 53), 0); r.Limited {
		t.Fatalf("after 100 ms: %+v; want a token", r)
	}
}

// Adaptive timeouts: past the start threshold, unassured entries time out
// sooner (never below the floor); assured ones keep their timeout.
func TestAdaptiveTimeouts(t *testing.T) {
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 1000, Timeouts: conntrack.DefaultTimeouts(), Seed: 1,
		AdaptiveStart: 100, AdaptiveEnd: 200, AdaptiveFloor: 2 * time.Second})
	now := int64(time.Hour)
	tr.SetNow(now)
	// One assured UDP flow, one half-open TCP connection.
	assureUDP(t, tr, 999)
	now = tr.Now()
	tr.Track(seg(t, cli, srv, 4000, 22, "S", 100, 0, 1000, 0), 0)
	// 148 unanswered UDP flows: 150 entries, half way: scale 0.5.
	for i := uint16(0); i < 148; i++ {
		tr.Track(udp(t, cli, srv, 1000+i, 53), 0)
	}
	tr.SetNow(now + int64(16*time.Second))
	if s := tr.AdaptiveScale(); s != 0.5 {
		t.Fatalf("scale %v at 150/[100,200]; want 0.5", s)
	}
	// UDP unreplied (30 s) now lives 15 s: 16 s after its packet it is gone.
	// TCP SYN_SENT (120 s) lives 60 s. The assured UDP flow lives 120 s.
	n := 0
	for i := 0; i < 20; i++ {
		n += tr.Reap(64)
	}
	if n != 148 || tr.Stats.Adaptive != 148 {
		t.Fatalf("reaped %d (%d adaptive); want the 148 unanswered UDP flows", n, tr.Stats.Adaptive)
	}
	if r := tr.Track(seg(t, srv, cli, 22, 4000, "SA", 500, 101, 1000, 0), 0); r.State != conntrack.Established {
		t.Fatalf("SYN/ACK of the half-open connection after 16 s: %v; want ESTABLISHED", r.State)
	}
	// At the end of the range the floor applies: 2 s after its last packet.
	for i := uint16(0); i < 250; i++ {
		tr.Track(udp(t, cli, srv, 3000+i, 53), 0)
	}
	tr.SetNow(now + int64(17*time.Second))
	if tr.AdaptiveScale() != 0 {
		t.Fatalf("scale %v above the end; want 0", tr.AdaptiveScale())
	}
	if r := tr.Track(udp(t, cli, srv, 3000, 53), 0); r.Created {
		t.Fatal("1 s after its packet an unanswered flow expired: the floor is 2 s")
	}
	tr.SetNow(now + int64(19*time.Second))
	if r := tr.Track(udp(t, cli, srv, 3001, 53), 0); !r.Created {
		t.Fatal("3 s after its packet, above the end, an unanswered flow still lives")
	}
	if r := tr.Track(udp(t, srv, cli, 53, 999), 0); r.State != conntrack.Established || r.Created {
		t.Fatalf("assured flow: %+v; want ESTABLISHED, kept", r)
	}
}

// A new connection that finds the table full takes the place of an
// expired entry the sweep has not reached yet, as an expiry, before it
// early-drops a live one.
func TestFullTableTakesExpired(t *testing.T) {
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 16, Timeouts: conntrack.DefaultTimeouts(), Seed: 1})
	for i := uint16(0); i < 64 && tr.Table.Len() < tr.Table.Cap(); i++ {
		tr.Track(udp(t, cli, srv, 1000+i, 53), 0)
	}
	full := tr.Table.Len()
	tr.SetNow(tr.Now() + int64(31*time.Second)) // past UDP's 30 s
	before := tr.Stats.Expired
	if r := tr.Track(udp(t, cli, srv, 9000, 53), 0); r.State != conntrack.New || r.Full {
		t.Fatalf("a new flow into a table of %d expired entries: %+v", full, r)
	}
	if tr.Stats.Expired != before+1 || tr.Stats.EarlyDrops != 0 {
		t.Errorf("expired %d (want %d), early drops %d (want 0)", tr.Stats.Expired, before+1, tr.Stats.EarlyDrops)
	}
}
