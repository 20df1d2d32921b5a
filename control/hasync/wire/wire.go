// Package wire is conntrackd's synchronization protocol (conntrack-tools
// 1.4.x, protocol version 1), as it crosses the sync link: datagrams
// holding one or more messages, each an 8-byte header (version and type,
// flags, length, sequence number; 16 bytes with the acknowledgement range
// of ACK, NACK and RESYNC control messages) and, for data messages, a list
// of attributes (TLVs, 4-byte aligned) describing one connection or one
// expectation. Every field is big-endian; addresses and ports are in
// network order as libnetfilter_conntrack's attribute groups hold them.
//
// The package only encodes and decodes; what a message means (the
// NOTRACK and FTFW sync modes, caches) is the hasync package's.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the protocol version conntrackd 1.4 speaks.
const Version = 1

// Header sizes: every message's, and the ACK/NACK/RESYNC control
// message's (with its sequence range).
const (
	HeaderLen = 8
	AckLen    = 16
)

// MaxMessage is the largest message this package builds or accepts: a
// message's length is 16 bits, and conntrackd's own buffer is 4096 bytes.
const MaxMessage = 4096

// Type is a message's type.
type Type uint8

// Message types (enum nethdr_type).
const (
	CTNew     Type = 0
	CTUpdate  Type = 1
	CTDelete  Type = 2
	ExpNew    Type = 3
	ExpUpdate Type = 4
	ExpDelete Type = 5
	Control   Type = 10
)

var typeNames = map[Type]string{CTNew: "ct-new", CTUpdate: "ct-update", CTDelete: "ct-delete",
	ExpNew: "exp-new", ExpUpdate: "exp-update", ExpDelete: "exp-delete", Control: "control"}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// IsConn and IsExpect say whether a data message carries a connection or
// an expectation.
func (t Type) IsConn() bool   { return t <= CTDelete }
func (t Type) IsExpect() bool { return t >= ExpNew && t <= ExpDelete }

// Flags are a message's flags (NET_F_*).
type Flags uint8

// Flags.
const (
	FlagResync    Flags = 1 << 1 // "send me everything" (a control message)
	FlagNack      Flags = 1 << 2 // "resend From..To" (FTFW)
	FlagAck       Flags = 1 << 3 // "I have everything up to To" (FTFW)
	FlagAlive     Flags = 1 << 4 // a heartbeat
	FlagHello     Flags = 1 << 5 // FTFW: I (re)started, reset your sequence tracking
	FlagHelloBack Flags = 1 << 6 // FTFW: the answer to a HELLO
)

// Header is a message's header. From and To are only on the wire for a
// control message with FlagAck, FlagNack or FlagResync.
type Header struct {
	Type     Type
	Flags    Flags
	Seq      uint32
	From, To uint32
}

// HasRange says whether the header carries From and To (struct nethdr_ack).
func (h *Header) HasRange() bool {
	return h.Type == Control && h.Flags&(FlagAck|FlagNack|FlagResync) != 0
}

// IsData says whether the message is a connection or expectation
// (conntrackd's IS_DATA: a data type, no flags but HELLO/HELLO_BACK).
func (h *Header) IsData() bool {
	return h.Type <= ExpDelete && h.Flags&^(FlagHello|FlagHelloBack) == 0
}

// Errors of Next: each names what conntrackd counts the message as.
var (
	ErrTruncated  = errors.New("truncated message")
	ErrBadVersion = errors.New("unknown protocol version")
	ErrBadSize    = errors.New("message length out of range")
)

// Next splits the first message off a datagram: its header, its body
// (the attributes, for a data message) and the rest of the datagram. A
// datagram that ends mid-message is an error, as are a length shorter
// than the header and a version other than 1 (after which the rest of
// the datagram cannot be trusted either).
func Next(b []byte) (h Header, body, rest []byte, err error) {
	if len(b) < HeaderLen {
		return h, nil, nil, ErrTruncated
	}
	if b[0]>>4 != Version {
		return h, nil, nil, fmt.Errorf("%w %d", ErrBadVersion, b[0]>>4)
	}
	h.Type, h.Flags = Type(b[0]&0xf), Flags(b[1])
	n := int(binary.BigEndian.Uint16(b[2:]))
	h.Seq = binary.BigEndian.Uint32(b[4:])
	min := HeaderLen
	if h.HasRange() {
		min = AckLen
	}
	if n < min {
		return h, nil, nil, fmt.Errorf("%w: %d bytes, a %s message has at least %d", ErrBadSize, n, h.Type, min)
	}
	if n > len(b) {
		return h, nil, nil, fmt.Errorf("%w: %d bytes announced, %d left", ErrTruncated, n, len(b))
	}
	if h.HasRange() {
		h.From, h.To = binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	}
	return h, b[min:n], b[n:], nil
}

// AppendHeader appends a message with header h and body (attributes
// built by a Builder, or nothing), setting its length.
func AppendHeader(b []byte, h Header, body []byte) []byte {
	n := HeaderLen
	if h.HasRange() {
		n = AckLen
	}
	n += len(body)
	b = append(b, Version<<4|byte(h.Type)&0xf, byte(h.Flags))
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, h.Seq)
	if h.HasRange() {
		b = binary.BigEndian.AppendUint32(b, h.From)
		b = binary.BigEndian.AppendUint32(b, h.To)
	}
	return append(b, body...)
}

// attrHdr is an attribute's header: 16-bit length (header included,
// padding not) and type.
const attrHdr = 4

func align4(n int) int { return (n + 3) &^ 3 }

// attr is one attribute, as walkAttrs finds it.
type attr struct {
	typ uint16
	val []byte
}

// ErrBadAttr is a malformed attribute list (conntrackd's
// msg_rcv_bad_payload).
var ErrBadAttr = errors.New("bad attribute")

// walkAttrs calls f for each attribute of body, checking what
// conntrackd's msg2ct checks: an attribute fits, is at least a header
// long, and has a known type (below max). A tail of at most a header's
// length is ignored, as conntrackd ignores it.
func walkAttrs(body []byte, max uint16, f func(a attr) error) error {
	for len(body) > attrHdr {
		n := int(binary.BigEndian.Uint16(body))
		typ := binary.BigEndian.Uint16(body[2:])
		if n > len(body) || n < attrHdr {
			return fmt.Errorf("%w %d: length %d with %d bytes left", ErrBadAttr, typ, n, len(body))
		}
		if typ >= max {
			return fmt.Errorf("%w %d: unknown type", ErrBadAttr, typ)
		}
		if err := f(attr{typ, body[attrHdr:n]}); err != nil {
			return err
		}
		next := min(align4(n), len(body))
		body = body[next:]
	}
	return nil
}
