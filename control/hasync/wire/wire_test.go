package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// tcpConn is an established, assured TCP connection as conntrackd's
// ct2msg builds it with window tracking on.
func tcpConn() Conn {
	c := Conn{Orig: Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.19.0.2"), Proto: 6,
		SrcPort: 40000, DstPort: 80}, Status: StatusSeenReply | StatusAssured | StatusConfirmed, TCPState: 3,
		WScale: [2]uint8{7, 9}, Timeout: 431999}
	for _, a := range []Attr{AttrIPv4, AttrStatus, AttrL4Proto, AttrPort, AttrTCPState, AttrWScaleOrig, AttrWScaleRepl, AttrTimeout} {
		c.Set(a)
	}
	return c
}

// TestConnBytes: a message is byte for byte what conntrackd sends
// (written out by hand from network.h and build.c: big-endian header
// and attribute headers, values padded to 4 bytes, addresses and ports
// in network order).
func TestConnBytes(t *testing.T) {
	c := tcpConn()
	body, err := AppendConn(nil, &c)
	if err != nil {
		t.Fatal(err)
	}
	msg := AppendHeader(nil, Header{Type: CTNew, Seq: 0x01020304}, body)
	want := strings.Join([]string{
		"10 00 004c 01020304",         // version 1, type 0; flags; length 76; seq
		"000c 0000 c6120001 c6130002", // NTA_IPV4: 198.18.0.1 → 198.19.0.2
		"0008 0005 0000000e",          // NTA_STATUS: SEEN_REPLY|ASSURED|CONFIRMED
		"0005 0002 06000000",          // NTA_L4PROTO: tcp, padded
		"0008 0003 9c40 0050",         // NTA_PORT: 40000 → 80
		"0005 0004 03000000",          // NTA_TCP_STATE: ESTABLISHED
		"0005 0019 07000000",          // NTA_TCP_WSCALE_ORIG
		"0005 001a 09000000",          // NTA_TCP_WSCALE_REPL
		"0008 0006 0006977f",          // NTA_TIMEOUT: 431999 s
	}, "")
	want = strings.ReplaceAll(want, " ", "")
	if got := hex.EncodeToString(msg); got != want {
		t.Fatalf("message\n%s\nwant\n%s", got, want)
	}
	h, b, rest, err := Next(msg)
	if err != nil || h.Type != CTNew || h.Seq != 0x01020304 || len(rest) != 0 {
		t.Fatalf("Next: %+v %v rest %d", h, err, len(rest))
	}
	got, err := ParseConn(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("ParseConn: %+v %v\nwant %+v", got, err, c)
	}
}

// TestICMPID: the ICMP identifier travels little-endian, as conntrackd on
// x86-64 sends it (it swaps a value already in network order).
func TestICMPID(t *testing.T) {
	c := Conn{ICMPID: 99}
	c.Set(AttrICMPID)
	body, _ := AppendConn(nil, &c)
	if got := hex.EncodeToString(body); got != "0006001863000000" {
		t.Errorf("ICMP id 99: %s", got)
	}
}

// TestControl: ACK, NACK and RESYNC carry a sequence range, ALIVE does not.
func TestControl(t *testing.T) {
	for _, tt := range []struct {
		h    Header
		want string
	}{
		{Header{Type: Control, Flags: FlagAlive, Seq: 7}, "1a10000800000007"},
		{Header{Type: Control, Flags: FlagAck, Seq: 7, From: 1, To: 5}, "1a08001000000007" + "0000000100000005"},
		{Header{Type: Control, Flags: FlagResync, Seq: 9}, "1a02001000000009" + "0000000000000000"},
	} {
		msg := AppendHeader(nil, tt.h, nil)
		if got := hex.EncodeToString(msg); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.h, got, tt.want)
		}
		h, body, _, err := Next(msg)
		if err != nil || h != tt.h || len(body) != 0 {
			t.Errorf("%+v read back as %+v, %v", tt.h, h, err)
		}
	}
}

// TestNextErrors: what conntrackd counts as malformed is refused.
func TestNextErrors(t *testing.T) {
	for _, tt := range []struct {
		hex  string
		want error
	}{
		{"100000", ErrTruncated},
		{"2000000800000000", ErrBadVersion},
		{"1000000400000000", ErrBadSize},
		{"1a08000800000000", ErrBadSize}, // an ACK without its range
		{"1000001000000000", ErrTruncated},
	} {
		b, _ := hex.DecodeString(tt.hex)
		if _, _, _, err := Next(b); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.hex, err, tt.want)
		}
	}
}

// TestParseConnErrors: attributes conntrackd's msg2ct refuses, and those
// it would silently merge, are refused.
func TestParseConnErrors(t *testing.T) {
	for _, tt := range []struct{ name, hex, want string }{
		{"short value", "0007 0005 000000 00", "3 bytes, want 4"},
		{"overrun", "0010 0005 00000000", "length 16 with 8 bytes left"},
		{"under a header", "0002 0005 00000000", "length 2"},
		{"unknown", "0008 0020 00000000", "unknown type"},
		{"twice", "0005 0002 06000000 0005 0002 11000000", "given twice"},
		{"both families", "000c 0000 c6120001 c6130002 0024 0001" + strings.Repeat("00", 32), "both families"},
		{"long helper", "0011 001b 61626364 65666768 696a6b6c 6d000000", "at most 12"},
		{"labels", "0007 001c 010203 00", "whole 32-bit words"},
	} {
		b, _ := hex.DecodeString(strings.ReplaceAll(tt.hex, " ", ""))
		if _, err := ParseConn(b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	// A tail of up to a header's length is ignored, as conntrackd does.
	c := tcpConn()
	body, _ := AppendConn(nil, &c)
	if got, err := ParseConn(append(body, 0, 0, 0, 0)); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("with a 4-byte tail: %v", err)
	}
}

// TestRoundTrip: every attribute, for both families, connections and
// expectations, reads back as written.
func TestRoundTrip(t *testing.T) {
	v6 := Conn{Orig: Tuple{Src: netip.MustParseAddr("2001:2::1"), Dst: netip.MustParseAddr("2001:2::2"), Proto: 58},
		ICMPType: 128, ICMPID: 99, Status: StatusConfirmed, Timeout: 30, Mark: 5, Helper: "ftp", Labels: []uint32{1, 0x80000000},
		Master: Tuple{Src: netip.MustParseAddr("2001:2::1"), Dst: netip.MustParseAddr("2001:2::3"), Proto: 6, SrcPort: 1, DstPort: 21},
		SeqAdj: [6]uint32{1, 2, 3, 4, 5, 6}, SNAT: 7, DNAT: 8, SPAT: 9, DPAT: 10, SCTPState: 1, SCTPVTag: [2]uint32{2, 3}, DCCPState: 4, DCCPRole: 1}
	v6.Has = ^uint32(0) &^ (1<<AttrIPv4 | 1<<AttrMasterIPv4 | 1<<AttrPort) & (1<<numConnAttrs - 1)
	for _, c := range []Conn{tcpConn(), v6} {
		body, err := AppendConn(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseConn(body)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("read back\n%+v, %v\nwant\n%+v", got, err, c)
		}
	}
	e := Expect{Master: Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.19.0.2"), Proto: 6, SrcPort: 40000, DstPort: 21},
		Tuple:   Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.19.0.2"), Proto: 6, DstPort: 50000},
		Mask:    Tuple{Src: netip.MustParseAddr("255.255.255.255"), Dst: netip.MustParseAddr("255.255.255.255"), Proto: 255, DstPort: 0xffff},
		Timeout: 300, Helper: "ftp", Fn: ""}
	for _, a := range []Attr{ExpAttrMasterIPv4, ExpAttrMasterL4Proto, ExpAttrMasterPort, ExpAttrExpectIPv4, ExpAttrExpectL4Proto,
		ExpAttrExpectPort, ExpAttrMaskIPv4, ExpAttrMaskL4Proto, ExpAttrMaskPort, ExpAttrTimeout, ExpAttrFlags, ExpAttrHelperName} {
		e.Set(a)
	}
	body, err := AppendExpect(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseExpect(body)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Errorf("expectation read back\n%+v, %v\nwant\n%+v", got, err, e)
	}
	bad := tcpConn()
	bad.Orig.Src = netip.MustParseAddr("2001:2::1")
	if _, err := AppendConn(nil, &bad); err == nil {
		t.Error("an IPv6 address in the IPv4 attribute was encoded")
	}
}

// FuzzParse: any datagram splits into messages or fails cleanly; a
// message that parses encodes back to bytes that parse to the same
// value and encode identically.
func FuzzParse(f *testing.F) {
	c := tcpConn()
	body, _ := AppendConn(nil, &c)
	f.Add(AppendHeader(AppendHeader(nil, Header{Type: CTNew, Seq: 1}, body), Header{Type: Control, Flags: FlagAck, From: 1, To: 2}, nil))
	f.Add(AppendHeader(nil, Header{Type: ExpNew}, []byte{0, 12, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for n := 0; len(b) > 0 && n < 1000; n++ {
			h, body, rest, err := Next(b)
			if err != nil {
				return
			}
			if len(rest) >= len(b) {
				t.Fatalf("Next did not advance: %d of %d bytes left", len(rest), len(b))
			}
			b = rest
			switch {
			case h.Type.IsConn():
				checkConn(t, body)
			case h.Type.IsExpect():
				checkExpect(t, body)
			}
		}
	})
}

func checkConn(t *testing.T, body []byte) {
	c, err := ParseConn(body)
	if err != nil {
		return
	}
	enc, err := AppendConn(nil, &c)
	if err != nil {
		t.Fatalf("%+v parsed but does not encode: %v", c, err)
	}
	again, err := ParseConn(enc)
	if err != nil || !reflect.DeepEqual(again, c) {
		t.Fatalf("re-encoded\n%+v, %v\nwant\n%+v", again, err, c)
	}
	if enc2, _ := AppendConn(nil, &again); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable:\n%x\n%x", enc, enc2)
	}
}

func checkExpect(t *testing.T, body []byte) {
	e, err := ParseExpect(body)
	if err != nil {
		return
	}
	enc, err := AppendExpect(nil, &e)
	if err != nil {
		t.Fatalf("%+v parsed but does not encode: %v", e, err)
	}
	again, err := ParseExpect(enc)
	if err != nil || !reflect.DeepEqual(again, e) {
		t.Fatalf("re-encoded\n%+v, %v\nwant\n%+v", again, err, e)
	}
}
