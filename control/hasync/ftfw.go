package hasync

import (
	"time"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack"

	"github.com/dpfw/dpfw/control/hasync/wire"
)

// FTFW, conntrackd's reliable mode (sync-ftfw.c), on top of NOTRACK's
// messages:
//   - the sender keeps every message but heartbeats in a bounded resend
//     queue until the peer acknowledges it; a NACK for a range sends that
//     range again (with new sequence numbers, as conntrackd does);
//   - the receiver acknowledges every Window messages, and at each
//     heartbeat what arrived since its last acknowledgement; a gap in the
//     sequence numbers is NACKed at once; a message from before the
//     expected one is dropped;
//   - a node that starts marks its messages HELLO until the peer answers
//     HELLO_BACK; a HELLO tells the receiver that the peer restarted: it
//     forgets its resend queue (the peer knows nothing of it) and takes
//     the peer's sequence numbers afresh.

type ftfwState struct {
	window, winLeft int
	ackFrom         uint32
	ackFromSet      bool
	// helloDone is set once the peer answered HELLO_BACK; helloBack when
	// the next message must answer the peer's HELLO; peerHello while the
	// peer's messages carry HELLO (its handshake is not done).
	helloDone, helloBack bool
	peerHello, peerSeen  bool
	rsq                  resendQueue
}

func newFTFW(window, resend int) *ftfwState {
	if window <= 0 {
		window = 300
	}
	if resend <= 0 {
		resend = 131072
	}
	return &ftfwState{window: window, winLeft: window, rsq: resendQueue{buf: make([]rsEntry, resend)}}
}

// helloFlags are the handshake's flags for the next message.
func (f *ftfwState) helloFlags() wire.Flags {
	var fl wire.Flags
	if !f.helloDone {
		fl |= wire.FlagHello
	}
	if f.helloBack {
		fl |= wire.FlagHelloBack
		f.helloBack = false
	}
	return fl
}

func before(a, b uint32) bool { return int32(a-b) < 0 }

// control queues an ACK or NACK for [from, to]. Called with mu held.
func (n *Node) control(flag wire.Flags, from, to uint32) {
	if flag == wire.FlagAck {
		n.Stats.AcksSent.Add(1)
	} else {
		n.Stats.NacksSent.Add(1)
	}
	n.queue(wire.Header{Type: wire.Control, Flags: flag, From: from, To: to}, nil)
}

// ftfwReceive does FTFW's bookkeeping for one received message
// (ftfw_recv) and reports whether the message is to be taken.
//
// conntrackd takes every HELLO message as a restart of the peer, so
// until its handshake ends a gap goes unnoticed; dpfw takes a HELLO as a
// restart only when the sequence numbers say so (none seen yet, a number
// from before the expected one, or a jump past the resend queue), and
// NACKs a small gap during the handshake too. On a restart conntrackd
// forgets its resend queue (the peer knows nothing of it); dpfw sends it
// again instead, since when both nodes start together the peer did
// receive some of it, and what was lost would stay lost.
func (n *Node) ftfwReceive(h *wire.Header) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.ftfw
	if h.Flags&wire.FlagHelloBack != 0 {
		f.helloDone = true
	}
	exp := n.lastSeq + 1
	f.peerSeen, f.peerHello = true, h.Flags&wire.FlagHello != 0
	if h.Flags&wire.FlagHello != 0 {
		f.helloBack = true
		if !n.seqSet || before(h.Seq, exp) || h.Seq-exp > uint32(len(f.rsq.buf)) {
			if f.ackFromSet && before(h.Seq, f.ackFrom) {
				f.winLeft, f.ackFrom = f.window-1, h.Seq
			}
			n.Stats.PeerRestarts.Add(1)
			n.resendAll()    // what the peer did not acknowledge, again
			n.seqSet = false // its numbers start afresh
		}
	}
	if n.seqSet {
		switch {
		case before(h.Seq, exp):
			n.Stats.SeqBefore.Add(1)
			return false
		case h.Seq != exp:
			if f.ackFromSet {
				n.control(wire.FlagAck, f.ackFrom, exp-1)
			}
			n.control(wire.FlagNack, exp, h.Seq-1)
			f.winLeft, f.ackFrom, f.ackFromSet = f.window-1, h.Seq, true
			return true
		}
	}
	if !f.ackFromSet {
		f.ackFromSet, f.ackFrom = true, h.Seq
	}
	if f.winLeft--; f.winLeft <= 0 {
		n.control(wire.FlagAck, f.ackFrom, h.Seq)
		f.winLeft, f.ackFromSet = f.window, false
	}
	return true
}

// Handshaken says whether FTFW's HELLO handshakes are done: this node's
// (the peer answered its HELLO) and the peer's (its messages no longer
// carry HELLO). Until both are, a lost message may go unnoticed (the
// receiver of a HELLO takes the sender's numbers afresh, and conntrackd
// forgets its resend queue). Always true for NOTRACK.
func (n *Node) Handshaken() (ours, peers bool) {
	if n.ftfw == nil {
		return true, true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ftfw.helloDone, n.ftfw.peerSeen && !n.ftfw.peerHello
}

// aliveEvery is the heartbeat interval: while FTFW's handshake is not
// done, ten times as often, so that it ends soon on a lossy link.
func (n *Node) aliveEvery() time.Duration {
	if f := n.ftfw; f != nil && !f.helloDone {
		return n.cfg.Alive / 10
	}
	return n.cfg.Alive
}

// resendAll sends every message of the resend queue again. Called with
// mu held.
func (n *Node) resendAll() {
	var again []rsEntry
	n.ftfw.rsq.take(func(uint32) bool { return true }, func(e *rsEntry) { again = append(again, *e) })
	n.requeue(again)
}

// requeue sends kept messages again, with new numbers. Called with mu held.
func (n *Node) requeue(again []rsEntry) {
	for i := range again {
		e := &again[i]
		n.Stats.Resent.Add(1)
		e.h.Flags &^= wire.FlagHello | wire.FlagHelloBack // queue sets them as they are now
		n.queue(e.h, e.body[:e.n])
	}
}

// ftfwControl acts on the peer's ACK (forget what it has) and NACK (send
// that range again). A range that ends before it starts is malformed.
func (n *Node) ftfwControl(h *wire.Header) {
	if h.Flags&(wire.FlagAck|wire.FlagNack) == 0 {
		return
	}
	if before(h.To, h.From) {
		n.Stats.Malformed[malSize].Add(1)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.ftfw
	if h.Flags&wire.FlagAck != 0 {
		f.rsq.take(inRange(h.From, h.To), nil)
		return
	}
	var again []rsEntry
	f.rsq.take(inRange(h.From, h.To), func(e *rsEntry) { again = append(again, *e) })
	n.requeue(again)
}

// rsBody bounds a kept message's body: dpfw's CT messages are at most
// 84 bytes (IPv6 TCP), control messages have none.
const rsBody = 96

// ResendEntryBytes is the memory each of sync.resend_queue's slots takes.
const ResendEntryBytes = int(unsafe.Sizeof(rsEntry{}))

// CachedBytes estimates the memory one of the peer's connections takes in
// the external cache (its map entry: tuple, entry, times, overhead).
const CachedBytes = int(unsafe.Sizeof(conntrack.Tuple{})+unsafe.Sizeof(Synced{})) * 3 / 2

// rsEntry is one message kept until the peer acknowledges it.
type rsEntry struct {
	h    wire.Header
	n    uint8
	body [rsBody]byte
}

// resendQueue is a bounded FIFO of sent messages, in sending order (so in
// sequence order); when full, the oldest is forgotten, as conntrackd
// purges its head.
type resendQueue struct {
	buf     []rsEntry
	head, n int
}

// push keeps a sent message; it reports false when the queue had to
// forget its oldest for room, or the body does not fit.
func (q *resendQueue) push(h wire.Header, body []byte) bool {
	if len(body) > rsBody {
		return false
	}
	ok := true
	if q.n == len(q.buf) {
		q.head, q.n, ok = (q.head+1)%len(q.buf), q.n-1, false
	}
	e := &q.buf[(q.head+q.n)%len(q.buf)]
	e.h, e.n = h, uint8(copy(e.body[:], body))
	q.n++
	return ok
}

// inRange matches the sequence numbers from..to (wrapping around).
func inRange(from, to uint32) func(uint32) bool {
	return func(seq uint32) bool { return !before(seq, from) && !before(to, seq) }
}

// take removes the messages whose numbers match, handing each to f (if
// set) in order.
func (q *resendQueue) take(match func(seq uint32) bool, f func(*rsEntry)) {
	kept := 0
	for i := range q.n {
		e := &q.buf[(q.head+i)%len(q.buf)]
		if match(e.h.Seq) {
			if f != nil {
				f(e)
			}
			continue
		}
		if kept != i {
			q.buf[(q.head+kept)%len(q.buf)] = *e
		}
		kept++
	}
	q.n = kept
}

// ResendQueueLen is how many messages wait for the peer's
// acknowledgement (FTFW; 0 for NOTRACK).
func (n *Node) ResendQueueLen() int {
	if n.ftfw == nil {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ftfw.rsq.n
}
