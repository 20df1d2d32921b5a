package hasync

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/hasync/wire"
)

// Modes: conntrackd's NOTRACK (best effort) and FTFW (reliable: the
// receiver acknowledges windows of messages and asks for the ones a gap
// in the sequence numbers says it missed; the sender keeps what is not
// acknowledged and sends it again).
const (
	NoTrack = "notrack"
	FTFW    = "ftfw"
)

// Config is one node's side of a sync link.
type Config struct {
	// Mode is NoTrack or FTFW.
	Mode string
	// Window is how many messages FTFW acknowledges at a time (conntrackd's
	// ACKWindowSize, 300); ResendQueue how many unacknowledged messages
	// it keeps (ResendQueueSize, 131072).
	Window, ResendQueue int
	// Local is the address:port messages are received on (and sent
	// from); Peer the address:port they are sent to. Only datagrams
	// from Peer's address are taken.
	Local, Peer netip.AddrPort
	// Group, if set, is a multicast group:port the messages go to and
	// come from instead (conntrackd's Multicast: IPv4_address or
	// IPv6_address, and Group): the node joins it on Local's address
	// (IPv4_interface) or, for IPv6, on Interface, and sends from Local's
	// address with multicast loopback off. Only the peer's address is
	// then checked on what arrives.
	Group netip.AddrPort
	// Key, if set, authenticates every datagram with HMAC-SHA256 and
	// refuses replays (auth.go): between dpfw nodes only, as conntrackd
	// has no such option.
	Key []byte
	// Interface, if set, binds the socket to that kernel interface (the
	// dedicated sync link, conntrackd's Interface).
	Interface string
	// Netns, if set, is the network namespace the socket lives in.
	Netns string
	// Zone is the zone the peer's connections belong to here.
	Zone uint16
	// MaxEntries bounds the external cache.
	MaxEntries int
	// Datagram is the most a datagram carries (the link's MTU less the
	// IP and UDP headers).
	Datagram int
	// Alive is how often a heartbeat goes out when nothing else did.
	Alive time.Duration
	Log   *slog.Logger
	// OnConn, if set, is called (on the receiving goroutine) with each of
	// the peer's connections the external cache took or dropped
	// (active-active installs them at once). *e is valid only during the
	// call.
	OnConn func(t wire.Type, e *conntrack.Entry)
	// OnExpect is OnConn for the peer's expectations.
	OnExpect func(t wire.Type, x *conntrack.Expectation)
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Node is one end of a sync link: a socket, the sender's state (driven by
// one goroutine: OfferEntry, Flush, Tick), the receiver (Receive, its own
// goroutine) and the external cache.
type Node struct {
	cfg Config
	// conn receives; send sends (the same socket, but with multicast).
	conn, send *net.UDPConn
	peer       *net.UDPAddr

	// The sender's state (mu): the next sequence number, the datagram
	// being filled, and FTFW's resend queue and HELLO handshake. Both
	// goroutines send: the daemon's (events, dumps, heartbeats) and the
	// receiver (FTFW's acknowledgements, resends).
	mu       sync.Mutex
	seq      uint32
	out      []byte
	msgs     int // messages in out
	lastSend time.Time
	scratch  []byte
	msg      wire.Conn
	// rmsg and rentry are the receiving goroutine's: each CT message is
	// parsed into rmsg and becomes rentry.
	rmsg   wire.Conn
	rentry conntrack.Entry
	ftfw   *ftfwState
	// seal and unseal authenticate datagrams (nil without Config.Key):
	// seal under mu, unseal on the receiving goroutine.
	seal, unseal *auth

	External *Cache
	Expects  *ExpectCache
	Stats    Stats

	// resync is signalled when the peer asks for everything.
	resync chan struct{}

	// The receiver's sequence tracking (under mu: FTFW's heartbeat
	// acknowledges up to lastSeq).
	seqSet  bool
	lastSeq uint32
	// peerSeen is when the last message from the peer arrived (unix ns).
	peerSeen atomic.Int64
	closeMu  sync.Mutex
	closed   bool
}

// Stats are a node's counters, for dpfw ha status and the metrics.
type Stats struct {
	MsgsSent, BytesSent, Datagrams, SendErrors atomic.Uint64
	MsgsRecv, BytesRecv, Foreign               atomic.Uint64
	// AuthBad counts datagrams refused for a missing or wrong MAC,
	// AuthStale ones refused as replayed, reordered or too far from this
	// node's clock (Config.Key).
	AuthBad, AuthStale atomic.Uint64
	// SeqLost counts messages the peer sent that never arrived (gaps in
	// its sequence numbers), SeqBefore ones that came late or twice.
	SeqLost, SeqBefore atomic.Uint64
	// Malformed counts messages conntrackd would count as malformed, by
	// reason; Refused, connections dpfw cannot take, by reason.
	Malformed [numMalformed]atomic.Uint64
	Refused   [numRefused]atomic.Uint64
	// ResyncsAsked: resyncs this node asked for; ResyncsServed: dumps it
	// sent; EventsLost: connection events the sync could not send (a
	// worker's sync ring full), each of which starts a dump.
	ResyncsAsked, ResyncsServed, EventsLost atomic.Uint64
	// FTFW: acknowledgements and NACKs sent, messages sent again, and
	// messages the resend queue had no room for.
	AcksSent, NacksSent, Resent, ResendOverflow atomic.Uint64
	// PeerRestarts counts the peer's HELLOs that started its sequence
	// numbers afresh.
	PeerRestarts atomic.Uint64
}

// Malformed and refused reasons, as the metrics label them.
const (
	malTruncated = iota
	malVersion
	malSize
	malAttr
	malType
	numMalformed
)

// MalformedNames label Stats.Malformed.
var MalformedNames = [numMalformed]string{"truncated", "version", "size", "attribute", "type"}

// RefusedNames label Stats.Refused.
var RefusedNames = [...]string{"nat", "tuple", "tcp_state", "cache_full"}

const numRefused = len(RefusedNames)

// New opens the node's socket.
func New(cfg Config) (*Node, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Datagram <= wire.AckLen || cfg.Datagram > 65507 {
		cfg.Datagram = 1472
	}
	if cfg.Alive <= 0 {
		cfg.Alive = time.Second
	}
	var recv, send *net.UDPConn
	open := func() (err error) {
		recv, send, err = openSockets(&cfg)
		return err
	}
	var err error
	if cfg.Netns != "" {
		err = inNetns(cfg.Netns, open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, err
	}
	to := cfg.Peer
	if cfg.Group.IsValid() {
		to = cfg.Group
	}
	n := &Node{cfg: cfg, conn: recv, send: send, peer: net.UDPAddrFromAddrPort(to),
		External: NewCache(cfg.MaxEntries), Expects: NewExpectCache(max(cfg.MaxEntries/16, 1024)), resync: make(chan struct{}, 1),
		seq: uint32(cfg.Now().Unix()), out: make([]byte, 0, cfg.Datagram)}
	if cfg.Mode == FTFW {
		n.ftfw = newFTFW(cfg.Window, cfg.ResendQueue)
	}
	if len(cfg.Key) > 0 {
		n.seal, n.unseal = newAuth(cfg.Key), newAuth(cfg.Key)
		n.cfg.Datagram -= AuthLen
	}
	return n, nil
}

// Close closes the socket (Receive returns).
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.send != n.conn {
		_ = n.send.Close()
	}
	return n.conn.Close()
}

// ResyncRequests is signalled when the peer asks for a dump of this
// node's connections.
func (n *Node) ResyncRequests() <-chan struct{} { return n.resync }

// PeerSeen is when the last message from the peer arrived (zero: never).
func (n *Node) PeerSeen() time.Time {
	if ns := n.peerSeen.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// MessageType is the CT message a connection event becomes.
func MessageType(t conntrack.EventType) wire.Type {
	switch t {
	case conntrack.EventNew:
		return wire.CTNew
	case conntrack.EventDestroy:
		return wire.CTDelete
	}
	return wire.CTUpdate
}

// OfferEntry queues a CT message of type t for entry e.
func (n *Node) OfferEntry(t wire.Type, e *conntrack.Entry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msg = FromEntry(e) // the node's, so that encoding it allocates nothing
	body, err := wire.AppendConn(n.scratch[:0], &n.msg)
	if err != nil { // FromEntry builds only what encodes
		panic(fmt.Sprintf("hasync: %v", err))
	}
	n.scratch = body
	n.queue(wire.Header{Type: t}, body)
}

// RequestResync asks the peer for all its connections.
func (n *Node) RequestResync() {
	n.Stats.ResyncsAsked.Add(1)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queue(wire.Header{Type: wire.Control, Flags: wire.FlagResync}, nil)
	n.flush()
}

// queue appends one message to the datagram being filled, sending it
// first if the message does not fit; FTFW keeps it (but heartbeats) for
// resending, and marks it with the HELLO handshake's flags. Called with
// mu held.
func (n *Node) queue(h wire.Header, body []byte) {
	if n.ftfw != nil {
		h.Flags |= n.ftfw.helloFlags()
	}
	size := wire.HeaderLen + len(body)
	if h.HasRange() {
		size = wire.AckLen + len(body)
	}
	if len(n.out)+size > n.cfg.Datagram {
		n.flush()
	}
	h.Seq = n.seq
	n.seq++
	n.out = wire.AppendHeader(n.out, h, body)
	n.msgs++
	if n.ftfw != nil && h.Flags&wire.FlagAlive == 0 && !n.ftfw.rsq.push(h, body) {
		n.Stats.ResendOverflow.Add(1)
	}
}

// Flush sends the datagram being filled, if any.
func (n *Node) Flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flush()
}

// flush is Flush with mu held.
func (n *Node) flush() {
	if len(n.out) == 0 {
		return
	}
	out := n.out
	if n.seal != nil {
		out = n.seal.seal(out, n.cfg.Now())
	}
	if _, err := n.send.WriteToUDP(out, n.peer); err != nil {
		if c := n.Stats.SendErrors.Add(1); c&(c-1) == 0 { // the 1st, 2nd, 4th, 8th…
			n.cfg.Log.Warn("sync: sending to the peer", "err", err, "errors", c)
		}
	} else {
		n.Stats.Datagrams.Add(1)
		n.Stats.MsgsSent.Add(uint64(n.msgs))
		n.Stats.BytesSent.Add(uint64(len(out)))
	}
	n.out, n.msgs = out[:0], 0
	n.lastSend = n.cfg.Now()
}

// Tick sends what is queued, or, when nothing went out for the Alive
// interval, a heartbeat: with FTFW, an acknowledgement of what arrived
// since the last one if there is any (conntrackd's alive alarm).
func (n *Node) Tick() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.out) == 0 && n.cfg.Now().Sub(n.lastSend) >= n.aliveEvery() {
		if f := n.ftfw; f != nil && f.ackFromSet && n.seqSet {
			n.control(wire.FlagAck, f.ackFrom, n.lastSeq)
			f.ackFromSet = false
		} else {
			n.queue(wire.Header{Type: wire.Control, Flags: wire.FlagAlive}, nil)
		}
	}
	n.flush()
}

// Receive reads the peer's datagrams into the external cache until the
// node is closed.
func (n *Node) Receive() {
	buf := make([]byte, 65536)
	for {
		k, from, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			n.cfg.Log.Warn("sync: receiving", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if from.Addr().Unmap() != n.cfg.Peer.Addr().Unmap() {
			n.Stats.Foreign.Add(1)
			continue
		}
		n.Stats.BytesRecv.Add(uint64(k))
		n.datagram(buf[:k])
	}
}

// datagram takes each message of one datagram; FTFW's answers
// (acknowledgements, resends) go out at its end.
func (n *Node) datagram(b []byte) {
	now := n.cfg.Now()
	if n.unseal != nil {
		var why int
		if b, why = n.unseal.open(b, now); why != authOK {
			[2]*atomic.Uint64{&n.Stats.AuthBad, &n.Stats.AuthStale}[why-authBad].Add(1)
			return
		}
	}
	n.peerSeen.Store(now.UnixNano())
	if n.ftfw != nil {
		defer n.Flush()
	}
	for len(b) > 0 {
		h, body, rest, err := wire.Next(b)
		if err != nil {
			n.Stats.Malformed[nextReason(err)].Add(1)
			return
		}
		b = rest
		n.Stats.MsgsRecv.Add(1)
		if n.ftfw != nil && !n.ftfwReceive(&h) {
			continue // late: FTFW does not take it
		}
		n.trackSeq(h.Seq)
		n.message(&h, body, now)
	}
}

func nextReason(err error) int {
	switch {
	case errors.Is(err, wire.ErrBadVersion):
		return malVersion
	case errors.Is(err, wire.ErrBadSize):
		return malSize
	}
	return malTruncated
}

// trackSeq counts gaps and replays in the peer's sequence numbers, as
// conntrackd's nethdr_track_seq does.
func (n *Node) trackSeq(seq uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seqSet {
		switch d := int32(seq - (n.lastSeq + 1)); {
		case d > 0:
			n.Stats.SeqLost.Add(uint64(d))
		case d < 0:
			n.Stats.SeqBefore.Add(1)
		}
	}
	n.seqSet, n.lastSeq = true, seq
}

// message takes one message.
func (n *Node) message(h *wire.Header, body []byte, now time.Time) {
	switch {
	case h.Type == wire.Control:
		if h.Flags&wire.FlagResync != 0 {
			select {
			case n.resync <- struct{}{}:
			default:
			}
		}
		if n.ftfw != nil {
			n.ftfwControl(h)
		}
	case !h.IsData():
		n.Stats.Malformed[malType].Add(1)
	case h.Type.IsConn():
		if err := wire.ParseConnInto(body, &n.rmsg); err != nil {
			n.Stats.Malformed[malAttr].Add(1)
			return
		}
		n.take(h.Type, &n.rmsg, now)
	case h.Type.IsExpect():
		e, err := wire.ParseExpect(body)
		if err != nil {
			n.Stats.Malformed[malAttr].Add(1)
			return
		}
		n.takeExpect(h.Type, &e, now)
	default:
		n.Stats.Malformed[malType].Add(1)
	}
}

// take puts one connection in the external cache, or counts why not.
func (n *Node) take(t wire.Type, c *wire.Conn, now time.Time) {
	var err error
	e := &n.rentry // the receiving goroutine's: no allocation per message
	*e, err = ToEntry(c, n.cfg.Zone)
	if err == nil {
		err = n.External.apply(t, e, now)
	}
	if err == nil && n.cfg.OnConn != nil {
		n.cfg.OnConn(t, e)
	}
	n.refused(err)
}

// refused counts a message not taken, by its reason.
func (n *Node) refused(err error) {
	if err == nil {
		return
	}
	var r *refused
	if errors.As(err, &r) {
		for i, name := range RefusedNames {
			if name == r.name {
				n.Stats.Refused[i].Add(1)
			}
		}
	}
}
