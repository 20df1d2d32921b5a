package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// An attribute's codec, over the message it belongs to (Conn or Expect):
// its value's exact size (or, for variable ones, -1 and the most
// conntrackd accepts, header included), how it decodes and how it
// encodes. The constructors below build each from the field it reads and
// writes, so that the two directions cannot disagree.
type codec[T any] struct {
	size     int
	maxTotal int
	words    bool // a variable value of whole 32-bit words
	str      bool // a NUL-terminated string
	parse    func(m *T, v []byte)
	put      func(b []byte, m *T) []byte
}

func be16(v []byte) uint16 { return binary.BigEndian.Uint16(v) }
func be32(v []byte) uint32 { return binary.BigEndian.Uint32(v) }

func u8[T any](f func(*T) *uint8) codec[T] {
	return codec[T]{size: 1, parse: func(m *T, v []byte) { *f(m) = v[0] },
		put: func(b []byte, m *T) []byte { return append(b, *f(m)) }}
}

func u16[T any](f func(*T) *uint16) codec[T] {
	return codec[T]{size: 2, parse: func(m *T, v []byte) { *f(m) = be16(v) },
		put: func(b []byte, m *T) []byte { return binary.BigEndian.AppendUint16(b, *f(m)) }}
}

func u32[T any](f func(*T) *uint32) codec[T] {
	return codec[T]{size: 4, parse: func(m *T, v []byte) { *f(m) = be32(v) },
		put: func(b []byte, m *T) []byte { return binary.BigEndian.AppendUint32(b, *f(m)) }}
}

// u16le is a 16-bit value conntrackd puts on the wire in the wrong
// order: the ICMP identifier and the NAT ports, which
// libnetfilter_conntrack holds in network order and conntrackd converts
// to network order once more (htons), so that on the little-endian hosts
// it runs on (x86-64, arm64) they travel little-endian. dpfw matches what
// those hosts send.
func u16le[T any](f func(*T) *uint16) codec[T] {
	return codec[T]{size: 2, parse: func(m *T, v []byte) { *f(m) = binary.LittleEndian.Uint16(v) },
		put: func(b []byte, m *T) []byte { return binary.LittleEndian.AppendUint16(b, *f(m)) }}
}

// u32s is a fixed array of 32-bit values.
func u32s[T any](f func(*T) []uint32) codec[T] {
	var zero T
	n := len(f(&zero))
	return codec[T]{size: 4 * n,
		parse: func(m *T, v []byte) {
			for i, dst := 0, f(m); i < n; i++ {
				dst[i] = be32(v[4*i:])
			}
		},
		put: func(b []byte, m *T) []byte {
			for _, x := range f(m) {
				b = binary.BigEndian.AppendUint32(b, x)
			}
			return b
		}}
}

// bytesN is a fixed array of bytes (an IPv6 address).
func bytesN[T any](f func(*T) []byte) codec[T] {
	var zero T
	return codec[T]{size: len(f(&zero)), parse: func(m *T, v []byte) { copy(f(m), v) },
		put: func(b []byte, m *T) []byte { return append(b, f(m)...) }}
}

// addrPair is a tuple's source and destination (nfct_attr_grp_ipv4, 8
// bytes, or _ipv6, 32).
func addrPair[T any](size int, f func(*T) *Tuple) codec[T] {
	return codec[T]{size: size,
		parse: func(m *T, v []byte) {
			t := f(m)
			if size == 8 {
				t.Src, t.Dst = netip.AddrFrom4([4]byte(v[:4])), netip.AddrFrom4([4]byte(v[4:]))
			} else {
				t.Src, t.Dst = netip.AddrFrom16([16]byte(v[:16])), netip.AddrFrom16([16]byte(v[16:]))
			}
		},
		put: func(b []byte, m *T) []byte {
			t := f(m)
			if size == 8 {
				s, d := t.Src.As4(), t.Dst.As4()
				return append(append(b, s[:]...), d[:]...)
			}
			s, d := t.Src.As16(), t.Dst.As16()
			return append(append(b, s[:]...), d[:]...)
		}}
}

// portPair is a tuple's ports (nfct_attr_grp_port).
func portPair[T any](f func(*T) *Tuple) codec[T] {
	return codec[T]{size: 4,
		parse: func(m *T, v []byte) { t := f(m); t.SrcPort, t.DstPort = be16(v), be16(v[2:]) },
		put: func(b []byte, m *T) []byte {
			t := f(m)
			return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, t.SrcPort), t.DstPort)
		}}
}

// str is a NUL-terminated string of at most maxTotal-attrHdr bytes,
// NUL included.
func str[T any](maxTotal int, f func(*T) *string) codec[T] {
	return codec[T]{size: -1, maxTotal: maxTotal, str: true,
		parse: func(m *T, v []byte) { *f(m), _, _ = strings.Cut(string(v), "\x00") },
		put:   func(b []byte, m *T) []byte { return append(append(b, *f(m)...), 0) }}
}

// parseAttrs decodes body's attributes into m with the table, marking
// each in has. Besides what conntrackd checks (walkAttrs, sizes), an
// attribute given twice is refused.
func parseAttrs[T any](body []byte, table []codec[T], has *uint32, m *T) error {
	return walkAttrs(body, uint16(len(table)), func(a attr) error {
		d := &table[a.typ]
		if d.size >= 0 && len(a.val) != d.size {
			return fmt.Errorf("%w %d: %d bytes, want %d", ErrBadAttr, a.typ, len(a.val), d.size)
		}
		if d.size < 0 && attrHdr+len(a.val) > d.maxTotal {
			return fmt.Errorf("%w %d: %d bytes, at most %d", ErrBadAttr, a.typ, len(a.val), d.maxTotal-attrHdr)
		}
		if d.size < 0 && len(a.val) == 0 {
			return fmt.Errorf("%w %d: empty", ErrBadAttr, a.typ)
		}
		if d.str && bytes.IndexByte(a.val, 0) < 0 {
			return fmt.Errorf("%w %d: a string without its NUL", ErrBadAttr, a.typ)
		}
		if d.words && len(a.val)%4 != 0 {
			return fmt.Errorf("%w %d: %d bytes, not whole 32-bit words", ErrBadAttr, a.typ, len(a.val))
		}
		if *has&(1<<a.typ) != 0 {
			return fmt.Errorf("%w %d: given twice", ErrBadAttr, a.typ)
		}
		*has |= 1 << a.typ
		d.parse(m, a.val)
		return nil
	})
}

// appendAttrs appends the attributes of m marked in has, in order.
func appendAttrs[T any](b []byte, order []Attr, table []codec[T], has uint32, m *T) []byte {
	for _, a := range order {
		if has&(1<<a) == 0 {
			continue
		}
		start := len(b)
		b = append(b, 0, 0, 0, 0)
		b = table[a].put(b, m)
		n := len(b) - start
		binary.BigEndian.PutUint16(b[start:], uint16(n))
		binary.BigEndian.PutUint16(b[start+2:], uint16(a))
		for ; n%4 != 0; n++ {
			b = append(b, 0)
		}
	}
	return b
}

// checkFamily refuses addresses that are not of the family of the
// attribute (v4 or v6, 255 for none) marked in has, or both marked.
func checkFamily(has uint32, v4, v6 Attr, t *Tuple) error {
	on := func(a Attr) bool { return a < 32 && has&(1<<a) != 0 }
	switch {
	case on(v4) && on(v6):
		return fmt.Errorf("attributes %d and %d: addresses of both families", v4, v6)
	case on(v4) && !(t.Src.Is4() && t.Dst.Is4()):
		return fmt.Errorf("attribute %d: %v, %v are not IPv4 addresses", v4, t.Src, t.Dst)
	case on(v6) && !(t.Src.Is6() && t.Dst.Is6()):
		return fmt.Errorf("attribute %d: %v, %v are not IPv6 addresses", v6, t.Src, t.Dst)
	}
	return nil
}
