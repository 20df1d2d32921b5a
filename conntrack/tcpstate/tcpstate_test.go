package tcpstate_test

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
)

func wsOpt(shift byte) []byte { return []byte{1, 3, 3, shift} } // NOP, window scale

func TestWindowScaling(t *testing.T) {
	for _, tt := range []struct {
		name           string
		synOpt, saOpt  []byte
		dataWin        uint16 // server's advertised (raw) window after the handshake
		clientSends    int    // bytes the client then sends in one segment
		wantAccepted   bool
		wantAfterState tcpstate.State
	}{
		// With scaling on both sides, a raw window of 1000 << 7 admits 100 KB.
		{"both scale", wsOpt(7), wsOpt(7), 1000, 100_000, true, tcpstate.Established},
		// Scaling offered by one side only is off (RFC 7323): 100 KB overruns
		// a 1000-byte window... but within MAXACKWINDOW slack netfilter still
		// requires seq ≤ maxend; the segment starts in window, so it passes.
		{"client only", wsOpt(7), nil, 1000, 100, true, tcpstate.Established},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var tcb tcpstate.TCB
			o := tcpstate.Options{}
			syn := tcpstate.Segment{Seq: 100, Window: 65535, Flags: 0x02, Options: tt.synOpt}
			if ok, r := tcb.Init(&syn, o); !ok {
				t.Fatalf("Init: %v", r)
			}
			step := func(s tcpstate.Segment, dir uint8, seenReply bool) tcpstate.Result {
				res, reason := tcb.Update(&s, dir, seenReply, false, o)
				if res == tcpstate.Invalid {
					t.Logf("invalid: %v", reason)
				}
				return res
			}
			step(syn, 0, false)
			step(tcpstate.Segment{Seq: 900, Ack: 101, Window: 65535, Flags: 0x12, Options: tt.saOpt}, 1, false)
			step(tcpstate.Segment{Seq: 101, Ack: 901, Window: 1000, Flags: 0x10}, 0, true)
			step(tcpstate.Segment{Seq: 901, Ack: 101, Window: tt.dataWin, Flags: 0x10}, 1, true)
			res := step(tcpstate.Segment{Seq: 101, Ack: 901, Window: 1000, Flags: 0x18, PayloadLen: tt.clientSends}, 0, true)
			if (res == tcpstate.Accept) != tt.wantAccepted {
				t.Errorf("data segment: %v; want accepted=%v", res, tt.wantAccepted)
			}
			if tcb.State != tt.wantAfterState {
				t.Errorf("state %v; want %v", tcb.State, tt.wantAfterState)
			}
		})
	}
}

// TestScaledWindowRejectsOverrun: with scaling off, data far beyond the
// receiver's window is INVALID; the same data fits a scaled window.
func TestScaledWindowRejectsOverrun(t *testing.T) {
	run := func(shift []byte) tcpstate.Result {
		var tcb tcpstate.TCB
		syn := tcpstate.Segment{Seq: 100, Window: 65535, Flags: 0x02, Options: shift}
		tcb.Init(&syn, tcpstate.Options{})
		tcb.Update(&syn, 0, false, false, tcpstate.Options{})
		tcb.Update(&tcpstate.Segment{Seq: 900, Ack: 101, Window: 512, Flags: 0x12, Options: shift}, 1, false, false, tcpstate.Options{})
		tcb.Update(&tcpstate.Segment{Seq: 101, Ack: 901, Window: 512, Flags: 0x10}, 0, true, false, tcpstate.Options{})
		// The server advertises 512, scaled (×2^14 = 8 MB) if both offered scaling.
		tcb.Update(&tcpstate.Segment{Seq: 901, Ack: 101, Window: 512, Flags: 0x10}, 1, true, false, tcpstate.Options{})
		// The client sends 1 MB beyond what a 512-byte window allows.
		res, _ := tcb.Update(&tcpstate.Segment{Seq: 101 + 1_000_000, Ack: 901, Window: 512, Flags: 0x18, PayloadLen: 100}, 0, true, false, tcpstate.Options{})
		return res
	}
	if got := run(nil); got != tcpstate.Invalid {
		t.Errorf("unscaled: %v; want invalid", got)
	}
	if got := run(wsOpt(14)); got != tcpstate.Accept {
		t.Errorf("scaled by 2^14: %v; want accept", got)
	}
}

func TestSegmentParse(t *testing.T) {
	h := make([]byte, 24+5)
	binary.BigEndian.PutUint32(h[4:], 7)
	binary.BigEndian.PutUint32(h[8:], 9)
	h[12] = 6 << 4
	h[13] = 0x12
	binary.BigEndian.PutUint16(h[14:], 1234)
	var s tcpstate.Segment
	s.Parse(h)
	if s.Seq != 7 || s.Ack != 9 || s.Window != 1234 || s.Flags != 0x12 || s.PayloadLen != 5 || len(s.Options) != 4 {
		t.Errorf("Parse: %+v", s)
	}
}

func FuzzUpdate(f *testing.F) {
	f.Add([]byte{0x02, 0, 0, 0, 1, 0x12, 1, 0, 0, 2, 0x10, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tcb tcpstate.TCB
		for i := 0; i+5 <= len(b); i += 5 {
			s := tcpstate.Segment{Flags: b[i], Seq: uint32(b[i+2]) << 24, Ack: uint32(b[i+3]) << 16, Window: uint16(b[i+4]) << 8, PayloadLen: int(b[i+4])}
			if i == 0 {
				if ok, _ := tcb.Init(&s, tcpstate.Options{Loose: true}); !ok {
					return
				}
			}
			tcb.Update(&s, b[i+1]&1, b[i+1]&2 != 0, b[i+1]&4 != 0, tcpstate.Options{})
			if int(tcb.State) >= tcpstate.NumStates {
				t.Fatalf("state out of range: %d", tcb.State)
			}
		}
	})
}

// The parts' sizes are what connection tables budget for (conntrack stores
// the Head in its 64-byte entry and the Windows beside it).
var (
	_ [8]byte  = [unsafe.Sizeof(tcpstate.Head{})]byte{}
	_ [48]byte = [unsafe.Sizeof(tcpstate.Windows{})]byte{}
)

// BenchmarkUpdateEstablished: one data segment and its ACK of an
// established connection, per op (the tracker's common TCP path).
func BenchmarkUpdateEstablished(b *testing.B) {
	var tcb tcpstate.TCB
	o := tcpstate.Options{}
	syn := tcpstate.Segment{Seq: 100, Window: 65535, Flags: 0x02, Options: wsOpt(7)}
	tcb.Init(&syn, o)
	tcb.Update(&syn, 0, false, false, o)
	tcb.Update(&tcpstate.Segment{Seq: 900, Ack: 101, Window: 65535, Flags: 0x12, Options: wsOpt(7)}, 1, false, false, o)
	tcb.Update(&tcpstate.Segment{Seq: 101, Ack: 901, Window: 1000, Flags: 0x10}, 0, true, false, o)
	seq := uint32(101)
	for b.Loop() {
		d := tcpstate.Segment{Seq: seq, Ack: 901, Window: 1000, Flags: 0x18, PayloadLen: 100}
		if r, _ := tcb.Update(&d, 0, true, true, o); r != tcpstate.Accept {
			b.Fatal(r)
		}
		seq += 100
		a := tcpstate.Segment{Seq: 901, Ack: seq, Window: 1000, Flags: 0x10}
		if r, _ := tcb.Update(&a, 1, true, true, o); r != tcpstate.Accept {
			b.Fatal(r)
		}
	}
}
