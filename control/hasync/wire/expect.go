package wire

import (
	"fmt"
	"strings"
)

// Expectation attributes (enum nta_exp_attr).
const (
	ExpAttrMasterIPv4    Attr = 0 // the master connection's original addresses
	ExpAttrMasterIPv6    Attr = 1
	ExpAttrMasterL4Proto Attr = 2
	ExpAttrMasterPort    Attr = 3
	ExpAttrExpectIPv4    Attr = 4 // the expected connection's tuple
	ExpAttrExpectIPv6    Attr = 5
	ExpAttrExpectL4Proto Attr = 6
	ExpAttrExpectPort    Attr = 7
	ExpAttrMaskIPv4      Attr = 8 // which of the expected tuple's bits must match
	ExpAttrMaskIPv6      Attr = 9
	ExpAttrMaskL4Proto   Attr = 10
	ExpAttrMaskPort      Attr = 11
	ExpAttrTimeout       Attr = 12 // uint32, seconds left
	ExpAttrFlags         Attr = 13 // uint32, NF_CT_EXPECT_*
	ExpAttrClass         Attr = 14 // uint32
	ExpAttrNATIPv4       Attr = 15
	ExpAttrNATPort       Attr = 16
	ExpAttrNATL4Proto    Attr = 17
	ExpAttrNATDir        Attr = 18 // uint32
	ExpAttrHelperName    Attr = 19 // string, NUL-terminated
	ExpAttrFn            Attr = 20 // string, NUL-terminated
	numExpAttrs               = 21
)

// Expect is an expectation as an EXP message describes it: the master
// connection it belongs to, the connection it expects and the mask of
// what must match.
type Expect struct {
	Has     uint32 // 1<<Attr for each attribute present
	Master  Tuple
	Tuple   Tuple
	Mask    Tuple
	Timeout uint32
	Flags   uint32
	Class   uint32
	NAT     Tuple
	NATDir  uint32
	Helper  string
	Fn      string
}

// HasAttr says whether attribute a is present.
func (e *Expect) HasAttr(a Attr) bool { return e.Has&(1<<a) != 0 }

// Set marks attribute a present.
func (e *Expect) Set(a Attr) { e.Has |= 1 << a }

func expTuple(f func(*Expect) *Tuple) (v4, v6, proto, port codec[Expect]) {
	return addrPair[Expect](8, f), addrPair[Expect](32, f),
		u8[Expect](func(e *Expect) *uint8 { return &f(e).Proto }), portPair[Expect](f)
}

// expAttrs is the expectation codec (conntrackd's exp_h table).
var expAttrs = func() [numExpAttrs]codec[Expect] {
	var t [numExpAttrs]codec[Expect]
	t[ExpAttrMasterIPv4], t[ExpAttrMasterIPv6], t[ExpAttrMasterL4Proto], t[ExpAttrMasterPort] = expTuple(func(e *Expect) *Tuple { return &e.Master })
	t[ExpAttrExpectIPv4], t[ExpAttrExpectIPv6], t[ExpAttrExpectL4Proto], t[ExpAttrExpectPort] = expTuple(func(e *Expect) *Tuple { return &e.Tuple })
	t[ExpAttrMaskIPv4], t[ExpAttrMaskIPv6], t[ExpAttrMaskL4Proto], t[ExpAttrMaskPort] = expTuple(func(e *Expect) *Tuple { return &e.Mask })
	t[ExpAttrNATIPv4], _, t[ExpAttrNATL4Proto], t[ExpAttrNATPort] = expTuple(func(e *Expect) *Tuple { return &e.NAT })
	t[ExpAttrTimeout] = u32[Expect](func(e *Expect) *uint32 { return &e.Timeout })
	t[ExpAttrFlags] = u32[Expect](func(e *Expect) *uint32 { return &e.Flags })
	t[ExpAttrClass] = u32[Expect](func(e *Expect) *uint32 { return &e.Class })
	t[ExpAttrNATDir] = u32[Expect](func(e *Expect) *uint32 { return &e.NATDir })
	t[ExpAttrHelperName] = str[Expect](16, func(e *Expect) *string { return &e.Helper })
	t[ExpAttrFn] = str[Expect](32, func(e *Expect) *string { return &e.Fn })
	return t
}()

// expOrder is exp2msg's order.
var expOrder = []Attr{ExpAttrMasterIPv4, ExpAttrMasterIPv6, ExpAttrMasterL4Proto, ExpAttrMasterPort,
	ExpAttrExpectIPv4, ExpAttrExpectIPv6, ExpAttrExpectL4Proto, ExpAttrExpectPort,
	ExpAttrMaskIPv4, ExpAttrMaskIPv6, ExpAttrMaskL4Proto, ExpAttrMaskPort,
	ExpAttrTimeout, ExpAttrFlags, ExpAttrClass, ExpAttrNATIPv4, ExpAttrNATL4Proto, ExpAttrNATPort, ExpAttrNATDir,
	ExpAttrHelperName, ExpAttrFn}

// ParseExpect decodes an EXP message's body, with ParseConn's checks.
func ParseExpect(body []byte) (Expect, error) {
	var e Expect
	err := parseAttrs(body, expAttrs[:], &e.Has, &e)
	if err == nil {
		for a := ExpAttrMasterIPv4; a <= ExpAttrMaskIPv4; a += 4 {
			if e.HasAttr(a) && e.HasAttr(a+1) {
				err = fmt.Errorf("%w %d: addresses of both families", ErrBadAttr, a)
			}
		}
	}
	if err != nil {
		return Expect{}, err
	}
	return e, nil
}

// AppendExpect appends e's attributes, for each marked present, in the
// order conntrackd's exp2msg writes them.
func AppendExpect(b []byte, e *Expect) ([]byte, error) {
	for _, f := range [...]struct {
		v4, v6 Attr
		t      *Tuple
	}{{ExpAttrMasterIPv4, ExpAttrMasterIPv6, &e.Master}, {ExpAttrExpectIPv4, ExpAttrExpectIPv6, &e.Tuple},
		{ExpAttrMaskIPv4, ExpAttrMaskIPv6, &e.Mask}, {ExpAttrNATIPv4, 255, &e.NAT}} {
		if err := checkFamily(e.Has, f.v4, f.v6, f.t); err != nil {
			return b, err
		}
	}
	for _, s := range [...]struct {
		a   Attr
		max int
		v   string
	}{{ExpAttrHelperName, 16, e.Helper}, {ExpAttrFn, 32, e.Fn}} {
		if e.HasAttr(s.a) && (len(s.v)+1+attrHdr > s.max || strings.IndexByte(s.v, 0) >= 0) {
			return b, fmt.Errorf("%q: at most %d bytes, no NUL", s.v, s.max-attrHdr-1)
		}
	}
	return appendAttrs(b, expOrder, expAttrs[:], e.Has, e), nil
}
