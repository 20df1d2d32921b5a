package hasync

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/hasync/wire"
	"github.com/dpfw/dpfw/packet/header"
)

// Expectations (FTP data connections announced but not yet opened) go to
// the peer as conntrackd's EXP messages, so that a data connection
// announced on a node that fails opens, RELATED, on the one that takes
// over.

// FromExpectation is the EXP message body for x, as the kernel's FTP
// helper's expectation reads in conntrackd: the master's original tuple,
// the expected tuple (TCP, any source port), its mask, the timeout left
// and the helper.
func FromExpectation(x *conntrack.Expectation) wire.Expect {
	m := &x.Master
	e := wire.Expect{
		Master:  wire.Tuple{Src: m.SrcAddr(), Dst: m.DstAddr(), Proto: m.Proto, SrcPort: m.SrcPort, DstPort: m.DstPort},
		Tuple:   wire.Tuple{Src: x.SrcAddr(), Dst: x.DstAddr(), Proto: header.ProtoTCP, DstPort: x.DstPort},
		Mask:    wire.Tuple{Src: allOnes(x.Family), Dst: allOnes(x.Family), Proto: 0xff, DstPort: 0xffff},
		Timeout: x.Timeout / 1000, Helper: "ftp"}
	v4, v6 := wire.ExpAttrMasterIPv4, wire.ExpAttrMasterIPv6
	ip := v4
	if x.Family == 6 {
		ip = v6
	}
	for _, a := range []wire.Attr{ip, wire.ExpAttrMasterL4Proto, wire.ExpAttrMasterPort, ip + 4, wire.ExpAttrExpectL4Proto,
		wire.ExpAttrExpectPort, ip + 8, wire.ExpAttrMaskL4Proto, wire.ExpAttrMaskPort, wire.ExpAttrTimeout, wire.ExpAttrFlags,
		wire.ExpAttrHelperName} {
		e.Set(a)
	}
	return e
}

func allOnes(family uint8) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}

// ToExpectation is the expectation an EXP message describes, in zone. Only
// TCP expectations with a master dpfw can represent are taken.
func ToExpectation(e *wire.Expect, zone uint16) (conntrack.Expectation, error) {
	m, ok := conntrack.MakeTuple(e.Master.Src, e.Master.Dst, e.Master.Proto, e.Master.SrcPort, e.Master.DstPort, zone)
	t, ok2 := conntrack.MakeTuple(e.Tuple.Src, e.Tuple.Dst, e.Tuple.Proto, 0, e.Tuple.DstPort, zone)
	if !ok || !ok2 || e.Tuple.Proto != header.ProtoTCP || m.Family != t.Family {
		return conntrack.Expectation{}, errNoTuple
	}
	return conntrack.Expectation{Src: t.Src, Dst: t.Dst, DstPort: t.DstPort, Family: t.Family, Zone: zone, Master: m,
		Timeout: min(e.Timeout, 1<<31/1000) * 1000}, nil
}

// expectKey identifies an expectation: its tuple and master.
type expectKey struct {
	src, dst [16]byte
	dport    uint16
	master   conntrack.Tuple
}

func keyOf(x *conntrack.Expectation) expectKey {
	return expectKey{x.Src, x.Dst, x.DstPort, x.Master}
}

// ExpectCache holds the peer's expectations until they are opened,
// destroyed or expire (they time out here too: the timeout is short).
type ExpectCache struct {
	mu  sync.Mutex
	m   map[expectKey]syncedExpect
	max int
}

type syncedExpect struct {
	x  conntrack.Expectation
	at time.Time
}

// NewExpectCache returns a cache of at most max expectations.
func NewExpectCache(max int) *ExpectCache {
	return &ExpectCache{m: map[expectKey]syncedExpect{}, max: max}
}

func (c *ExpectCache) apply(t wire.Type, x *conntrack.Expectation, at time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := keyOf(x)
	if t == wire.ExpDelete {
		delete(c.m, k)
		return nil
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		return errFull
	}
	c.m[k] = syncedExpect{*x, at}
	return nil
}

// List returns the expectations not yet expired at now, each with the
// time it has left.
func (c *ExpectCache) List(now time.Time) []conntrack.Expectation {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []conntrack.Expectation
	for k, s := range c.m {
		left := time.Duration(s.x.Timeout)*time.Millisecond - now.Sub(s.at)
		if left <= 0 {
			delete(c.m, k)
			continue
		}
		x := s.x
		x.Timeout = uint32(left / time.Millisecond)
		out = append(out, x)
	}
	return out
}

// OfferExpect queues an EXP message of type t (ExpNew, ExpDelete) for x.
func (n *Node) OfferExpect(t wire.Type, x *conntrack.Expectation) {
	e := FromExpectation(x)
	n.mu.Lock()
	defer n.mu.Unlock()
	body, err := wire.AppendExpect(n.scratch[:0], &e)
	if err != nil { // FromExpectation builds only what encodes
		panic("hasync: " + err.Error())
	}
	n.scratch = body
	n.queue(wire.Header{Type: t}, body)
}

// takeExpect puts one of the peer's expectations in the cache.
func (n *Node) takeExpect(t wire.Type, e *wire.Expect, now time.Time) {
	x, err := ToExpectation(e, n.cfg.Zone)
	if err == nil {
		err = n.Expects.apply(t, &x, now)
	}
	if err == nil && n.cfg.OnExpect != nil {
		n.cfg.OnExpect(t, &x)
	}
	n.refused(err)
}
