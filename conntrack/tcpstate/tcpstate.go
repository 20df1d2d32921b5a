package tcpstate

import (
	"encoding/binary"
	"fmt"

	"github.com/dpfw/dpfw/packet/header"
)

// State is a connection's TCP state, numbered as in netfilter.
type State uint8

// States.
const (
	None State = iota
	SynSent
	SynRecv
	Established
	FinWait
	CloseWait
	LastAck
	TimeWait
	Close
	SynSent2
	numStates

	// ignore and invalid are transition results, never stored.
	ignore  State = 0xfe
	invalid State = 0xff
)

var stateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// StateNames lists the states' names, as String prints them.
func StateNames() []string { return append([]string(nil), stateNames[:]...) }

// NumStates is the number of states, for per-state arrays such as timeouts.
const NumStates = int(numStates)

// flag index of a segment (netfilter's tcp_bit_set).
type index uint8

const (
	idxSyn index = iota
	idxSynAck
	idxFin
	idxAck
	idxRst
	idxNone
)

// TCP flag bits.
const (
	tFIN = 0x01
	tSYN = 0x02
	tRST = 0x04
	tPSH = 0x08
	tACK = 0x10
	tURG = 0x20
	tECE = 0x40
	tCWR = 0x80
)

func segIndex(flags uint8) index {
	switch {
	case flags&tRST != 0:
		return idxRst
	case flags&tSYN != 0:
		if flags&tACK != 0 {
			return idxSynAck
		}
		return idxSyn
	case flags&tFIN != 0:
		return idxFin
	case flags&tACK != 0:
		return idxAck
	}
	return idxNone
}

const (
	sNO = None
	sSS = SynSent
	sSR = SynRecv
	sES = Established
	sFW = FinWait
	sCW = CloseWait
	sLA = LastAck
	sTW = TimeWait
	sCL = Close
	sS2 = SynSent2
	sIV = invalid
	sIG = ignore
)

// transitions[dir][index][state] is netfilter's tcp_conntracks table
// (net/netfilter/nf_conntrack_proto_tcp.c, Linux 5.10), restated.
var transitions = [2][6][numStates]State{
	{ // original direction
		//          sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		idxSyn:    {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		idxSynAck: {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
		idxFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		idxAck:    {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		idxRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		idxNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	{ // reply direction
		//          sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		idxSyn:    {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
		idxSynAck: {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		idxFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		idxAck:    {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		idxRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		idxNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
}

// validFlags is netfilter's table of valid flag combinations, PSH, ECE and
// CWR aside (tcp_error).
func validFlags(flags uint8) bool {
	switch flags &^ (tECE | tCWR | tPSH) {
	case tSYN, tSYN | tURG, tSYN | tACK, tRST, tRST | tACK, tFIN | tACK, tFIN | tACK | tURG, tACK, tACK | tURG:
		return true
	}
	return false
}

// Per-direction flags (netfilter's IP_CT_TCP_FLAG_*).
const (
	flagWScale    = 1 << 0
	flagSackPerm  = 1 << 1
	flagCloseInit = 1 << 2
	flagBeLiberal = 1 << 3
	flagUnacked   = 1 << 4
	flagMaxAckSet = 1 << 5
)

// seen is what one direction's segments told us (ip_ct_tcp_state).
type seen struct {
	End, MaxEnd, MaxWin, MaxAck uint32
	Scale, Flags                uint8
}

// TCB is one connection's tracking state. The zero value is a connection
// that has seen nothing. It holds no pointers. It is made of two parts that a
// connection table may store apart: the Head (state, retransmissions, the
// last segment's summary; 8 bytes), which is all that timeouts, listings and
// eviction read, and the Windows (48 bytes), which only TCP segments read.
type TCB struct {
	Head
	Windows
}

// Head is the first part of a TCB.
type Head struct {
	State  State
	lastIx index
	// lastDir is the direction of the last in-window (or ignored) segment.
	lastDir    uint8
	Retrans    uint8
	lastWscale uint8
	lastFlags  uint8
	lastWin    uint16
}

// Windows is the second part of a TCB: what each direction's segments told
// us, and the last segment's sequence range.
type Windows struct {
	Seen    [2]seen
	lastSeq uint32
	lastEnd uint32
}

// Segment is what the tracker needs from one TCP segment.
type Segment struct {
	Seq, Ack uint32
	Window   uint16
	Flags    uint8
	// PayloadLen is the number of data bytes.
	PayloadLen int
	// Options are the TCP option bytes (window scale, SACK permitted, SACK).
	Options []byte
}

// Parse reads s from a TCP header plus payload. It stores field by field:
// building a Segment and copying it costs a store-forwarding stall.
// Precondition: tcp holds a valid header (header.TCP.IsValid).
func (s *Segment) Parse(tcp []byte) {
	off := int(tcp[12]>>4) * 4
	s.Seq = binary.BigEndian.Uint32(tcp[4:8])
	s.Ack = binary.BigEndian.Uint32(tcp[8:12])
	s.Window = binary.BigEndian.Uint16(tcp[14:16])
	s.Flags = tcp[13]
	s.PayloadLen = len(tcp) - off
	s.Options = tcp[20:off]
}

func (s *Segment) end() uint32 {
	e := s.Seq + uint32(s.PayloadLen)
	if s.Flags&tSYN != 0 {
		e++
	}
	if s.Flags&tFIN != 0 {
		e++
	}
	return e
}

// Result is the outcome of one segment.
type Result uint8

// Results.
const (
	// Accept: the segment belongs to the connection and moved it on.
	Accept Result = iota
	// Ignore: the segment may be valid but the tracker may be out of sync
	// (netfilter's sIG): the state is unchanged and the packet passes.
	Ignore
	// Invalid: the segment cannot belong to the connection (bad flags,
	// impossible transition, out of window); the state is unchanged.
	Invalid
	// Reopen: a SYN reopens a closed or aborted connection: delete the
	// entry and track the segment as a new connection.
	Reopen
	// InvalidCrossed is Invalid for an assured connection's FIN or RST,
	// out of window, that answers one of the other direction, out of
	// window too: the two ends are out of sync with the tracker, and the
	// caller shortens the connection's timeout (nf_tcp_handle_invalid).
	InvalidCrossed
)

var resultNames = [...]string{"accept", "ignore", "invalid", "reopen", "invalid_crossed"}

func (r Result) String() string { return resultNames[r] }

// Reason says why a segment was Invalid.
type Reason uint8

// Invalid reasons.
const (
	ReasonNone Reason = iota
	ReasonFlags
	ReasonCannotStart // first segment cannot open a connection
	ReasonTransition  // no transition from this state
	ReasonSeqAbove    // SEQ is over the upper bound (over the receiver's window)
	ReasonSeqBelow    // SEQ is under the lower bound (already ACKed data)
	ReasonAckAbove    // ACK is over the upper bound (ACKed data not seen yet)
	ReasonAckBelow    // ACK is under the lower bound (overly delayed ACK)
	ReasonRst         // RST below the maximum ACK seen
	NumReasons
)

var reasonNames = [...]string{"none", "tcp_flags", "tcp_cannot_start", "tcp_transition",
	"tcp_seq_above_window", "tcp_seq_below_window", "tcp_ack_above_window", "tcp_ack_below_window", "tcp_rst_invalid"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Options are tracker-wide settings (netfilter sysctls).
type Options struct {
	// Liberal accepts out-of-window segments (nf_conntrack_tcp_be_liberal).
	Liberal bool
	// Loose picks up connections from mid-stream segments
	// (nf_conntrack_tcp_loose); netfilter's default is on.
	Loose bool
}

// ValidFlags reports whether a flag combination can appear at all.
func ValidFlags(flags uint8) bool { return validFlags(flags) }

// Init starts tracking from the connection's first segment (original
// direction). It reports false, with a reason, if that segment cannot start a
// connection: only a SYN can, or with Loose any segment whose transition from
// NONE is not invalid (an ACK: a connection picked up mid-stream).
func (t *TCB) Init(s *Segment, o Options) (bool, Reason) {
	if !validFlags(s.Flags) {
		return false, ReasonFlags
	}
	ns := transitions[0][segIndex(s.Flags)][None]
	if ns == invalid {
		return false, ReasonCannotStart
	}
	*t = TCB{}
	snd := &t.Seen[0]
	snd.End = s.end()
	snd.MaxWin = max(uint32(s.Window), 1)
	if ns == SynSent {
		snd.MaxEnd = snd.End
		parseOptions(s.Options, snd)
	} else {
		if !o.Loose {
			return false, ReasonCannotStart
		}
		// Mid-stream pickup: the history is lost; assume SACK and be
		// liberal with windows (they may be scaled).
		snd.MaxEnd = snd.End + snd.MaxWin
		t.Seen[0].Flags = flagSackPerm | flagBeLiberal
		t.Seen[1].Flags = flagSackPerm | flagBeLiberal
	}
	t.lastIx = idxNone
	return true, ReasonNone
}

// parseOptions reads window scale and SACK-permitted into st.
func parseOptions(o []byte, st *seen) {
	so := header.ParseSynOptions(o)
	st.Scale, st.Flags = 0, st.Flags&^(flagWScale|flagSackPerm)
	if so.HasScale {
		st.Scale, st.Flags = so.WScale, st.Flags|flagWScale
	}
	if so.SACKPerm {
		st.Flags |= flagSackPerm
	}
}

// highestSack returns the highest right edge of the SACK blocks in o, or ack.
func highestSack(o []byte, ack uint32) uint32 {
	sack := ack
	for i := 0; i < len(o); {
		switch o[i] {
		case 0:
			return sack
		case 1:
			i++
			continue
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			return sack
		}
		l := int(o[i+1])
		if o[i] == 5 && l >= 10 && (l-2)%8 == 0 {
			for j := i + 2; j+8 <= i+l; j += 8 {
				if r := binary.BigEndian.Uint32(o[j+4:]); after(r, sack) {
					sack = r
				}
			}
			return sack
		}
		i += l
	}
	return sack
}

func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(b-a) < 0 }

const maxAckWinConst = 66000

// Update tracks a segment of an existing connection in direction dir
// (0 original, 1 reply). seenReply and assured are the connection's status
// bits, which some transitions consult.
func (t *TCB) Update(s *Segment, dir uint8, seenReply, assured bool, o Options) (Result, Reason) {
	return Ref{&t.Head, &t.Windows}.Update(s, dir, seenReply, assured, o)
}

// Ref is a TCB whose two parts are stored apart (a connection table keeps
// the Head in its entry and the Windows beside it); Update works on it in
// place.
type Ref struct {
	*Head
	*Windows
}

// Update is TCB.Update on a TCB stored as r.
func (t Ref) Update(s *Segment, dir uint8, seenReply, assured bool, o Options) (Result, Reason) {
	if !validFlags(s.Flags) {
		return Invalid, ReasonFlags
	}
	old := t.State
	ix := segIndex(s.Flags)
	ns := transitions[dir][ix][old]
	switch ns {
	case SynSent:
		if old < TimeWait {
			break
		}
		// RFC 1122: a SYN may reopen a connection in TIME_WAIT; and a client
		// may abort and start again.
		if (t.Seen[dir].Flags|t.Seen[1-dir].Flags)&flagCloseInit != 0 ||
			(t.lastDir == dir && t.lastIx == idxRst) {
			return Reopen, ReasonNone
		}
		fallthrough
	case ignore:
		if !t.resync(s, dir, ix) {
			return Ignore, ReasonNone
		}
		old, ns = SynSent, SynRecv
	case invalid:
		return Invalid, ReasonTransition
	case SynRecv:
		// Simultaneous open: the final ACK arrives in reply direction.
		if dir == 1 && ix == idxAck && t.lastFlags&flagSimOpen != 0 {
			ns = Established
		}
	case SynSent2:
		t.lastFlags |= flagSimOpen
	case Close:
		if ix != idxRst {
			break
		}
		var skip bool
		if ns, skip = t.rst(s, dir, old, seenReply, assured); ns == invalid {
			return Invalid, ReasonRst
		} else if skip {
			t.lastIx, t.lastDir = ix, dir
			t.State = ns
			return Accept, ReasonNone
		}
	}
	switch v, reason := t.inWindow(s, dir, ix, o); v {
	case winInvalid:
		return t.handleInvalid(ix, dir, assured), reason
	case winIgnore:
		return Ignore, reason
	}
	t.lastIx, t.lastDir = ix, dir
	t.State = ns
	if old != ns && ns == FinWait {
		t.Seen[dir].Flags |= flagCloseInit
	}
	return Accept, ReasonNone
}

// resync handles a segment the transition table ignores (the tracker may
// be out of sync): it records it and reports false, to let it pass without
// changing state; or, if it is a SYN/ACK answering a SYN ignored earlier,
// it re-initializes the connection from that SYN and reports true.
func (t Ref) resync(s *Segment, dir uint8, ix index) bool {
	if ix == idxSynAck && t.lastIx == idxSyn && t.lastDir != dir && s.Ack == t.lastEnd {
		ld := t.lastDir
		t.Seen[ld] = seen{End: t.lastEnd, MaxEnd: t.lastEnd, MaxWin: max(uint32(t.lastWin), 1), Scale: t.lastWscale, Flags: t.lastFlags}
		t.Seen[dir] = seen{}
		return true
	}
	t.lastIx, t.lastDir, t.lastSeq, t.lastEnd, t.lastWin = ix, dir, s.Seq, s.end(), s.Window
	if ix == idxSyn && dir == 0 {
		var st seen
		parseOptions(s.Options, &st)
		t.lastFlags, t.lastWscale = st.Flags&(flagWScale|flagSackPerm), st.Scale
	}
	return false
}

// rst checks a RST that would close the connection (state old), as
// tcp_packet does before tcp_in_window, and returns the state to move to:
// invalid below the receiver's maximum ACK; the old state for an assured
// connection's inexact RST (to allow a challenge ACK); else Close. skip
// says the RST answers a segment let through while out of sync: it is
// accepted without the window check.
func (t Ref) rst(s *Segment, dir uint8, old State, seenReply, assured bool) (ns State, skip bool) {
	ns = Close
	rcv := &t.Seen[1-dir]
	if rcv.Flags&flagMaxAckSet != 0 {
		if before(s.Seq, rcv.MaxAck) {
			return invalid, false
		}
		if assured && old == Established && s.Seq != rcv.MaxAck &&
			!(t.lastIx == idxAck && t.lastDir == dir && s.Seq == t.lastEnd) {
			ns = old
		}
	}
	skip = ((seenReply && t.lastIx == idxSyn) || (!assured && t.lastIx == idxAck)) && s.Ack == t.lastEnd
	return ns, skip
}

// flagSimOpen in lastFlags marks a simultaneous open.
const flagSimOpen = 1 << 7

// windowVerdict is tcp_in_window's answer (netfilter's nf_ct_tcp_action).
type windowVerdict uint8

const (
	winAccept  windowVerdict = iota // in window: the state moves on
	winIgnore                       // pass without changing anything (overly delayed, or overshooting)
	winInvalid                      // INVALID
)

// initSender seeds a direction's window data from its SYN or SYN/ACK
// (netfilter's tcp_init_sender).
func initSender(snd, rcv *seen, s *Segment, end uint32, dir uint8) {
	snd.End, snd.MaxEnd = end, end
	snd.MaxWin = max(uint32(s.Window), 1)
	parseOptions(s.Options, snd)
	// RFC 7323: window scaling only if both sides offer it.
	if dir == 1 && (snd.Flags&flagWScale == 0 || rcv.Flags&flagWScale == 0) {
		snd.Scale, rcv.Scale = 0, 0
	}
}

// inWindow is netfilter's tcp_in_window, without NAT sequence offsets, as
// of Linux 6.1 to 6.18 (checked against 6.18's conntrack by the kernel
// differential test, cmd/dpfw/kernel_diff_test.go): a segment whose data
// or ACK lies below the window (overly delayed) is ignored, not INVALID; a
// segment that overshoots the receiver's window by no more than its
// largest window is ignored and advances the sender's end, so the ACK of
// it stays valid; only a SYN re-initializes a direction in SYN_SENT or
// SYN_RECV.
func (t Ref) inWindow(s *Segment, dir uint8, ix index, o Options) (windowVerdict, Reason) {
	snd, rcv := &t.Seen[dir], &t.Seen[1-dir]
	seq, ack := s.Seq, s.Ack
	sack := ack
	end := s.end()
	if rcv.Flags&flagSackPerm != 0 {
		sack = highestSack(s.Options, ack)
	}
	if (snd.MaxWin == 0 || s.Flags&tSYN != 0) && t.startSender(s, snd, rcv, end, sack, dir) {
		return winAccept, ReasonNone
	}
	if s.Flags&tACK == 0 {
		ack, sack = rcv.End, rcv.End
	} else if s.Flags&(tACK|tRST) == tACK|tRST && ack == 0 {
		ack, sack = rcv.End, rcv.End // broken stacks: RST+ACK with ack 0
	}
	if s.Flags&tRST != 0 && seq == 0 && t.State == SynSent {
		seq, end = snd.End, snd.End // RST answering a SYN
	}
	liberal := snd.Flags&flagBeLiberal != 0 || o.Liberal
	verdict := func(v windowVerdict, r Reason) (windowVerdict, Reason) {
		if liberal {
			return winAccept, ReasonNone // accepted as is, nothing updated
		}
		return v, r
	}
	maxAckWin := max(snd.MaxWin, maxAckWinConst)
	if !before(seq, snd.MaxEnd+1) {
		overshot := end - snd.MaxEnd + 1
		ackOK := after(sack, rcv.End-maxAckWin-1)
		inRecv := rcv.MaxWin != 0 && after(end, snd.End-rcv.MaxWin-1)
		if inRecv && ackOK && overshot <= rcv.MaxWin && before(sack, rcv.End+1) {
			// More bytes than the receive window allowed: if the rules
			// pass it and the peer ACKs it, that ACK must stay valid.
			if !liberal {
				snd.End = end
				snd.Flags |= flagUnacked
			}
			return verdict(winIgnore, ReasonSeqAbove)
		}
		return verdict(winInvalid, ReasonSeqAbove)
	}
	if !before(sack, rcv.End+1) {
		return verdict(winInvalid, ReasonAckAbove)
	}
	if rcv.MaxWin != 0 && !after(end, snd.End-rcv.MaxWin-1) {
		return verdict(winIgnore, ReasonSeqBelow) // already ACKed data retransmitted
	}
	if !after(sack, rcv.End-maxAckWin-1) {
		return verdict(winIgnore, ReasonAckBelow) // possibly an overly delayed ACK
	}
	t.advance(s, snd, rcv, seq, ack, sack, end, dir, ix)
	return winAccept, ReasonNone
}

// startSender is tcp_in_window's first part: a direction seen for the
// first time (or a SYN restarting it) takes its window from the segment.
// It reports true when a SYN without ACK ends the check there.
func (t Ref) startSender(s *Segment, snd, rcv *seen, end, sack uint32, dir uint8) bool {
	switch {
	case snd.MaxWin == 0 && s.Flags&tSYN != 0:
		// SYN-ACK in reply to a SYN, or SYN in reply direction
		// (simultaneous open).
		initSender(snd, rcv, s, end, dir)
		return s.Flags&tACK == 0
	case snd.MaxWin == 0:
		// Mid-connection: use what the segment says.
		snd.End = end
		swin := uint32(s.Window) << snd.Scale
		snd.MaxWin = max(swin, 1)
		snd.MaxEnd = end + snd.MaxWin
		if rcv.MaxWin == 0 {
			rcv.End, rcv.MaxEnd = sack, sack
		} else if sack == rcv.End+1 {
			rcv.End++ // likely a keepalive reply
		}
	case s.Flags&tSYN != 0 && after(end, snd.End) && (t.State == SynSent || t.State == SynRecv):
		// RFC 793: a reinitialized TCP uses larger sequence numbers;
		// start this direction again, as for its first SYN(-ACK).
		initSender(snd, rcv, s, end, dir)
		return dir == 1 && s.Flags&tACK == 0
	}
	return false
}

// advance is tcp_in_window's last part, for a segment in window: both
// directions' windows move on, and retransmissions are counted.
func (t Ref) advance(s *Segment, snd, rcv *seen, seq, ack, sack, end uint32, dir uint8, ix index) {
	win := uint32(s.Window)
	if s.Flags&tSYN == 0 {
		win <<= snd.Scale
	}
	if swin := win + (sack - ack); snd.MaxWin < swin {
		snd.MaxWin = swin
	}
	if after(end, snd.End) {
		snd.End = end
		snd.Flags |= flagUnacked
	}
	if s.Flags&tACK != 0 {
		if snd.Flags&flagMaxAckSet == 0 {
			snd.MaxAck = ack
			snd.Flags |= flagMaxAckSet
		} else if after(ack, snd.MaxAck) {
			snd.MaxAck = ack
		}
	}
	if rcv.MaxWin != 0 && after(end, snd.MaxEnd) {
		rcv.MaxWin += end - snd.MaxEnd
	}
	if after(sack+win, rcv.MaxEnd-1) {
		rcv.MaxEnd = sack + win
		if win == 0 {
			rcv.MaxEnd++
		}
	}
	if ack == rcv.End {
		rcv.Flags &^= flagUnacked
	}
	if ix == idxAck {
		if t.lastDir == dir && t.lastSeq == seq && t.lastEnd == end && t.lastWin == s.Window {
			if t.Retrans < 255 {
				t.Retrans++
			}
		} else {
			t.lastSeq, t.lastEnd, t.lastWin, t.Retrans = seq, end, s.Window, 0
		}
	}
}

// handleInvalid is netfilter's nf_tcp_handle_invalid, for a FIN or RST of
// an assured connection found out of window: it records the segment as the
// last one seen unless it answers a FIN or RST of the other direction (so
// that a SYN after an out-of-window RST can reopen the connection); then
// it is InvalidCrossed, for the caller to shorten the timeout.
func (t Ref) handleInvalid(ix index, dir uint8, assured bool) Result {
	if !assured || (ix != idxRst && ix != idxFin) {
		return Invalid
	}
	if t.lastDir != dir && (t.lastIx == idxFin || t.lastIx == idxRst) {
		return InvalidCrossed
	}
	t.lastIx, t.lastDir = ix, dir
	return Invalid
}

// Unacked reports whether either direction has data not yet acknowledged.
func (t *Windows) Unacked() bool { return (t.Seen[0].Flags|t.Seen[1].Flags)&flagUnacked != 0 }

// LastWindowZero reports whether the last segment advertised a zero window.
func (t *Head) LastWindowZero() bool { return t.lastWin == 0 }

// CanEarlyDrop reports whether the connection is closing and may be evicted
// first when the table is full (netfilter's tcp_can_early_drop).
func (t *Head) CanEarlyDrop() bool {
	switch t.State {
	case FinWait, LastAck, TimeWait, Close, CloseWait:
		return true
	}
	return false
}

// Synced is the tracking state of a connection installed from another
// node's state (a synced or committed entry) in state st: as conntrackd
// commits one to the kernel, both directions are tracked liberally with
// SACK permitted, and each direction's window is taken from its first
// segment here (nothing has been seen yet); a closing state keeps
// netfilter's CLOSE_INIT, as conntrackd sets it from TIME_WAIT on.
func Synced(st State) TCB {
	var t TCB
	t.State, t.lastIx = st, idxNone
	for d := range t.Seen {
		t.Seen[d].Flags = flagSackPerm | flagBeLiberal
		if st >= TimeWait && st < numStates {
			t.Seen[d].Flags |= flagCloseInit
		}
	}
	return t
}
