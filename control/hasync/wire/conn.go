package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Attr is a connection attribute's type (enum nta_attr).
type Attr uint8

// Connection attributes.
const (
	AttrIPv4          Attr = 0  // original source and destination, IPv4
	AttrIPv6          Attr = 1  // the same, IPv6
	AttrL4Proto       Attr = 2  // uint8
	AttrPort          Attr = 3  // original source and destination port
	AttrTCPState      Attr = 4  // uint8, netfilter's numbering
	AttrStatus        Attr = 5  // uint32, IPS_* bits
	AttrTimeout       Attr = 6  // uint32, seconds left
	AttrMark          Attr = 7  // uint32
	AttrMasterIPv4    Attr = 8  // the master's original addresses
	AttrMasterIPv6    Attr = 9  //
	AttrMasterL4Proto Attr = 10 //
	AttrMasterPort    Attr = 11 //
	AttrSNATIPv4      Attr = 12 // uint32: the reply's destination after SNAT
	AttrDNATIPv4      Attr = 13 // uint32: the reply's source after DNAT
	AttrSPATPort      Attr = 14 // uint16
	AttrDPATPort      Attr = 15 // uint16
	AttrNATSeqAdj     Attr = 16 // six uint32
	AttrSCTPState     Attr = 17 // uint8
	AttrSCTPVTagOrig  Attr = 18 // uint32
	AttrSCTPVTagRepl  Attr = 19 // uint32
	AttrDCCPState     Attr = 20 // uint8
	AttrDCCPRole      Attr = 21 // uint8
	AttrICMPType      Attr = 22 // uint8
	AttrICMPCode      Attr = 23 // uint8
	AttrICMPID        Attr = 24 // uint16
	AttrWScaleOrig    Attr = 25 // uint8
	AttrWScaleRepl    Attr = 26 // uint8
	AttrHelperName    Attr = 27 // string, NUL-terminated
	AttrLabels        Attr = 28 // uint32 words
	AttrSNATIPv6      Attr = 29 // 16 bytes (conntrack-tools 1.4.6 on)
	AttrDNATIPv6      Attr = 30 // 16 bytes
	AttrSynproxy      Attr = 31 // its, isn, tsoff: three uint32 (1.4.6 on)
	numConnAttrs           = 32
)

// Status bits (enum ip_conntrack_status) a sync message carries.
const (
	StatusExpected  uint32 = 1 << 0
	StatusSeenReply uint32 = 1 << 1
	StatusAssured   uint32 = 1 << 2
	StatusConfirmed uint32 = 1 << 3
	StatusSrcNAT    uint32 = 1 << 4
	StatusDstNAT    uint32 = 1 << 5
	StatusSeqAdjust uint32 = 1 << 6
)

// MaxHelperName is the longest helper name conntrackd accepts: its limit
// (16) counts the attribute header and the NUL.
const MaxHelperName = 16 - attrHdr - 1

// Tuple is one direction of a connection, or a master's original one.
type Tuple struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// Conn is a connection as a CT message describes it. Which attributes
// were (or are to be) present is in Has; a field whose attribute is
// absent is zero.
type Conn struct {
	Has      uint32 // 1<<Attr for each attribute present
	Orig     Tuple
	Status   uint32
	TCPState uint8
	WScale   [2]uint8 // original, reply
	Timeout  uint32
	Mark     uint32
	Master   Tuple
	ICMPType uint8
	ICMPCode uint8
	ICMPID   uint16
	// SCTP, DCCP and NAT, kept so that a message reads back whole.
	SCTPState uint8
	SCTPVTag  [2]uint32
	DCCPState uint8
	DCCPRole  uint8
	SNAT      uint32 // IPv4, host order
	DNAT      uint32
	SPAT      uint16
	DPAT      uint16
	SeqAdj    [6]uint32
	SNAT6     [16]byte
	DNAT6     [16]byte
	Synproxy  [3]uint32 // its, isn, tsoff
	Helper    string
	Labels    []uint32
}

// HasAttr says whether attribute a is present.
func (c *Conn) HasAttr(a Attr) bool { return c.Has&(1<<a) != 0 }

// Set marks attribute a present.
func (c *Conn) Set(a Attr) { c.Has |= 1 << a }

func orig(c *Conn) *Tuple   { return &c.Orig }
func master(c *Conn) *Tuple { return &c.Master }

// connAttrs is the codec, one entry per attribute (conntrackd's parse.c
// table). Those without a use in dpfw (SCTP, DCCP, NAT) are still
// checked and kept, so that a message reads back whole.
var connAttrs = [numConnAttrs]codec[Conn]{
	AttrIPv4:          addrPair[Conn](8, orig),
	AttrIPv6:          addrPair[Conn](32, orig),
	AttrL4Proto:       u8[Conn](func(c *Conn) *uint8 { return &c.Orig.Proto }),
	AttrPort:          portPair[Conn](orig),
	AttrTCPState:      u8[Conn](func(c *Conn) *uint8 { return &c.TCPState }),
	AttrStatus:        u32[Conn](func(c *Conn) *uint32 { return &c.Status }),
	AttrTimeout:       u32[Conn](func(c *Conn) *uint32 { return &c.Timeout }),
	AttrMark:          u32[Conn](func(c *Conn) *uint32 { return &c.Mark }),
	AttrMasterIPv4:    addrPair[Conn](8, master),
	AttrMasterIPv6:    addrPair[Conn](32, master),
	AttrMasterL4Proto: u8[Conn](func(c *Conn) *uint8 { return &c.Master.Proto }),
	AttrMasterPort:    portPair[Conn](master),
	AttrSNATIPv4:      u32[Conn](func(c *Conn) *uint32 { return &c.SNAT }),
	AttrDNATIPv4:      u32[Conn](func(c *Conn) *uint32 { return &c.DNAT }),
	AttrSPATPort:      u16le[Conn](func(c *Conn) *uint16 { return &c.SPAT }),
	AttrDPATPort:      u16le[Conn](func(c *Conn) *uint16 { return &c.DPAT }),
	AttrNATSeqAdj:     u32s[Conn](func(c *Conn) []uint32 { return c.SeqAdj[:] }),
	AttrSCTPState:     u8[Conn](func(c *Conn) *uint8 { return &c.SCTPState }),
	AttrSCTPVTagOrig:  u32[Conn](func(c *Conn) *uint32 { return &c.SCTPVTag[0] }),
	AttrSCTPVTagRepl:  u32[Conn](func(c *Conn) *uint32 { return &c.SCTPVTag[1] }),
	AttrDCCPState:     u8[Conn](func(c *Conn) *uint8 { return &c.DCCPState }),
	AttrDCCPRole:      u8[Conn](func(c *Conn) *uint8 { return &c.DCCPRole }),
	AttrICMPType:      u8[Conn](func(c *Conn) *uint8 { return &c.ICMPType }),
	AttrICMPCode:      u8[Conn](func(c *Conn) *uint8 { return &c.ICMPCode }),
	AttrICMPID:        u16le[Conn](func(c *Conn) *uint16 { return &c.ICMPID }),
	AttrWScaleOrig:    u8[Conn](func(c *Conn) *uint8 { return &c.WScale[0] }),
	AttrWScaleRepl:    u8[Conn](func(c *Conn) *uint8 { return &c.WScale[1] }),
	AttrHelperName:    str[Conn](16, func(c *Conn) *string { return &c.Helper }),
	AttrSNATIPv6:      bytesN[Conn](func(c *Conn) []byte { return c.SNAT6[:] }),
	AttrDNATIPv6:      bytesN[Conn](func(c *Conn) []byte { return c.DNAT6[:] }),
	AttrSynproxy:      u32s[Conn](func(c *Conn) []uint32 { return c.Synproxy[:] }),
	AttrLabels: {size: -1, maxTotal: attrHdr + 4096, words: true,
		parse: func(c *Conn, v []byte) {
			c.Labels = make([]uint32, len(v)/4)
			for i := range c.Labels {
				c.Labels[i] = be32(v[4*i:])
			}
		},
		put: func(b []byte, c *Conn) []byte {
			for _, w := range c.Labels {
				b = binary.BigEndian.AppendUint32(b, w)
			}
			return b
		}},
}

// ParseConn decodes a CT message's body. Like conntrackd it refuses an
// attribute of the wrong size, an unknown one or one that overruns the
// message; it also refuses one given twice, addresses of both families
// and labels that are not whole words, which conntrackd would silently
// merge or drop.
func ParseConn(body []byte) (Conn, error) {
	var c Conn
	if err := ParseConnInto(body, &c); err != nil {
		return Conn{}, err
	}
	return c, nil
}

// ParseConnInto is ParseConn into *c (which it resets), for a caller
// that keeps one Conn to parse every message into: nothing is allocated.
// On error *c is unspecified.
func ParseConnInto(body []byte, c *Conn) error {
	*c = Conn{}
	err := parseAttrs(body, connAttrs[:], &c.Has, c)
	if err == nil && (c.HasAttr(AttrIPv4) && c.HasAttr(AttrIPv6) || c.HasAttr(AttrMasterIPv4) && c.HasAttr(AttrMasterIPv6)) {
		err = fmt.Errorf("%w: addresses of both families", ErrBadAttr)
	}
	return err
}

// AppendConn appends c's attributes, for each marked present, in the
// order conntrackd's ct2msg writes them.
func AppendConn(b []byte, c *Conn) ([]byte, error) {
	if err := c.check(); err != nil {
		return b, err
	}
	return appendAttrs(b, connOrder, connAttrs[:], c.Has, c), nil
}

// check refuses what conntrackd could not read back.
func (c *Conn) check() error {
	if err := checkFamily(c.Has, AttrIPv4, AttrIPv6, &c.Orig); err != nil {
		return err
	}
	if err := checkFamily(c.Has, AttrMasterIPv4, AttrMasterIPv6, &c.Master); err != nil {
		return err
	}
	if c.HasAttr(AttrHelperName) && (len(c.Helper) > MaxHelperName || strings.IndexByte(c.Helper, 0) >= 0) {
		return fmt.Errorf("helper name %q: at most %d bytes, no NUL", c.Helper, MaxHelperName)
	}
	if len(c.Labels) > 1024 {
		return fmt.Errorf("%d label words: at most 1024", len(c.Labels))
	}
	return nil
}

// connOrder is ct2msg's order: addresses, status, protocol and its
// attributes, timeout, mark, the master, NAT, helper, labels, synproxy.
var connOrder = []Attr{AttrIPv4, AttrIPv6, AttrStatus, AttrL4Proto, AttrPort, AttrTCPState, AttrWScaleOrig, AttrWScaleRepl,
	AttrSCTPState, AttrSCTPVTagOrig, AttrSCTPVTagRepl, AttrDCCPState, AttrDCCPRole,
	AttrICMPType, AttrICMPCode, AttrICMPID, AttrTimeout, AttrMark,
	AttrMasterIPv4, AttrMasterIPv6, AttrMasterL4Proto, AttrMasterPort,
	AttrSNATIPv4, AttrDNATIPv4, AttrSNATIPv6, AttrDNATIPv6, AttrSPATPort, AttrDPATPort, AttrNATSeqAdj,
	AttrHelperName, AttrLabels, AttrSynproxy}
