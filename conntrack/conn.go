package conntrack

import (
	"fmt"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
)

// State is a packet's connection state, as iptables' -m state names it.
type State uint8

// States. Their Mask values combine into the sets rules match on.
const (
	Invalid State = iota
	New
	Established
	Related
	Untracked
	NumStates
)

var stateNames = [...]string{"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Mask returns the state's bit, for state sets.
func (s State) Mask() uint8 { return 1 << s }

// ParseState parses an iptables state name (upper case, as iptables prints
// it; iptables itself also accepts lower case).
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

// Entry flags.
const (
	flagUsed      = 1 << 0
	flagSeenReply = 1 << 1 // IPS_SEEN_REPLY
	flagAssured   = 1 << 2 // IPS_ASSURED: never early-dropped
	flagRelated   = 1 << 3 // created by an expectation (or an ICMP error's flow)
	flagHelper    = 1 << 4 // an FTP control connection: inspect its payload
	flagConfirmed = 1 << 5 // IPS_CONFIRMED: its first packet was accepted
)

// Conn is one tracked connection: one 64-byte cache line (checked in
// table_test.go) holding everything a packet of an established connection
// reads. It holds no pointers and refers to other entries by index. A TCP
// connection's window data (tcpstate.Windows, 48 bytes) lives beside it in
// a parallel array of the table, read by TCP segments only; with its two
// bucket slots a connection costs 126 bytes.
type Conn struct {
	// Orig is the tuple of the connection's first packet.
	Orig Tuple
	// expires is when the entry times out, in milliseconds of the tracker's
	// clock; compared with wrap-around arithmetic (timeouts < 24 days).
	expires uint32
	// master is 1 + the index of the connection that expected this one
	// (RELATED), or, on an FTP control connection (flagHelper), 1 + its
	// helper slot; 0 otherwise. A UDP connection is never expected nor a
	// helper's (expectations are TCP's): its master holds streamAt.
	master uint32
	// dec and cacheState cache the rule set's decision for each direction:
	// dec packs DecisionGenBits of the rule-set generation and one
	// DecisionBits-bit decision id (see filter.Filter.Decision) per
	// direction, valid for packets of direction d in state cacheState's
	// nibble d − 1 while the generation's low bits match.
	dec        [3]uint16
	flags      uint8
	cacheState uint8
	// TCP is the head of the TCP tracking state (TCP connections only).
	TCP tcpstate.Head
}

// connSize is the size of Conn and winSize that of its TCP windows, checked
// in table_test.go.
const (
	connSize = 64
	winSize  = 48
)

// streamAt is when a UDP connection that saw a reply becomes a stream
// (netfilter's proto.udp.stream_ts: 2 s after its first packet), in ms of
// the tracker's clock.
func (c *Conn) streamAt() uint32 { return c.master }

func (c *Conn) setStreamAt(ms uint32) { c.master = ms }

// SeenReply reports whether packets were seen in both directions.
func (c *Conn) SeenReply() bool { return c.flags&flagSeenReply != 0 }

// Assured reports whether the connection is assured (not early-dropped).
func (c *Conn) Assured() bool { return c.flags&flagAssured != 0 }

// IsRelated reports whether an expectation created the connection.
func (c *Conn) IsRelated() bool { return c.flags&flagRelated != 0 }

// Master returns the index of the connection that expected this one.
// (For FTP control connections the field holds their helper slot instead.)
func (c *Conn) Master() (uint32, bool) {
	return c.master - 1, c.master != 0 && c.flags&flagRelated != 0
}

// Decision cache layout: the generation's low DecisionGenBits, then a
// DecisionBits-bit decision id per direction, in Conn.dec's 48 bits.
const (
	DecisionGenBits = 8
	DecisionBits    = 20
	// MaxDecision is the largest decision id a connection caches.
	MaxDecision = 1<<DecisionBits - 1
	genMask     = 1<<DecisionGenBits - 1
)

func (c *Conn) decBits() uint64 {
	return uint64(c.dec[0]) | uint64(c.dec[1])<<16 | uint64(c.dec[2])<<32
}

func (c *Conn) setDecBits(v uint64) {
	c.dec[0], c.dec[1], c.dec[2] = uint16(v), uint16(v>>16), uint16(v>>32)
}

// CachedDecision returns the decision cached for packets of direction d in
// state st under rule-set generation gen, if any.
func (c *Conn) CachedDecision(gen uint32, st State, d Dir) (uint32, bool) {
	v := c.decBits()
	id := uint32(v>>(DecisionGenBits+DecisionBits*uint(d&1))) & MaxDecision
	return id, uint32(v)&genMask == gen&genMask && (c.cacheState>>(4*(d&1)))&0xf == uint8(st)+1
}

// CacheDecision caches a decision (at most MaxDecision) for packets of
// direction d in state st under rule-set generation gen. A new generation
// clears the other direction's entry.
func (c *Conn) CacheDecision(gen uint32, st State, d Dir, decision uint32) {
	v := c.decBits()
	if uint32(v)&genMask != gen&genMask {
		v, c.cacheState = uint64(gen&genMask), 0
	}
	sh := 4 * (d & 1)
	c.cacheState = c.cacheState&^(0xf<<sh) | (uint8(st)+1)<<sh
	ds := DecisionGenBits + DecisionBits*uint(d&1)
	v = v&^(MaxDecision<<ds) | uint64(decision&MaxDecision)<<ds
	c.setDecBits(v)
}

// GenerationEpoch is the part of a rule-set generation the decision cache
// does not hold: when it changes between two rounds of a worker, cached
// decisions of an older generation could look current, and the worker
// clears them (ClearDecisions).
func GenerationEpoch(gen uint32) uint32 { return gen >> DecisionGenBits }

// ClearDecisions forgets every cached decision (needed when the
// generation's cached bits wrap around: GenerationEpoch).
func (t *Table) ClearDecisions() {
	for i := range t.conns {
		t.conns[i].cacheState = 0
	}
}
