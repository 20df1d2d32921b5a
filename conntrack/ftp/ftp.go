// Package ftp parses the FTP control-channel lines that announce data
// connections (RFC 959 PORT and 227, RFC 2428 EPRT and 229), for the
// connection tracker's FTP helper. It works on one line at a time, never
// allocates, and rejects anything malformed: an attacker controls these
// bytes.
package ftp

import (
	"net/netip"
)

// Kind is what a line announces.
type Kind uint8

// Kinds of announcement.
const (
	None Kind = iota
	Port      // client: PORT h1,h2,h3,h4,p1,p2 (active, IPv4)
	Eprt      // client: EPRT |af|addr|port| (active, IPv4 or IPv6)
	Pasv      // server: 227 … (h1,h2,h3,h4,p1,p2) (passive, IPv4)
	Epsv      // server: 229 … (|||port|) (passive; the address is the control connection's)
)

var kindNames = [...]string{"none", "PORT", "EPRT", "227", "229"}

func (k Kind) String() string { return kindNames[k] }

// Announce is a parsed announcement. Addr is invalid for Epsv.
type Announce struct {
	Kind Kind
	Addr netip.Addr
	Port uint16
}

// Active reports whether the server will open the data connection.
func (a Announce) Active() bool { return a.Kind == Port || a.Kind == Eprt }

// ParseClient parses a line the client sent (without the line ending).
// Commands are case-insensitive (RFC 959 §5.3). ok is false for lines that
// are not PORT/EPRT. malformed is set for PORT/EPRT lines that
// nf_conntrack_ftp finds malformed (a "partial match"), whose segment it
// drops. A line whose numbers are out of range (an address byte over 255)
// is neither: the kernel's parser wraps such numbers into the next byte;
// dpfw makes no expectation of it and lets it pass.
func ParseClient(line []byte) (a Announce, ok bool, malformed bool) {
	switch {
	case hasPrefixFold(line, "PORT "):
		a, rest, err := parseHostPort(line[5:])
		if err == errNone && len(rest) != 0 {
			err = errSyntax // nf_conntrack_ftp's PORT ends at the line's end ('\r')
		}
		if err != errNone {
			return Announce{}, false, err == errSyntax
		}
		a.Kind = Port
		return a, true, false
	case hasPrefixFold(line, "EPRT "):
		a, err := parseEprt(line[5:])
		if err != errNone {
			return Announce{}, false, err == errSyntax
		}
		return a, true, false
	}
	return Announce{}, false, false
}

// parseErr says why a line announced nothing.
type parseErr uint8

const (
	errNone   parseErr = iota
	errSyntax          // malformed: netfilter drops the segment
	errRange           // well formed, a number out of range
)

// ParseServer parses a line the server sent: 227 and 229 replies. As in
// nf_conntrack_ftp (its search table has "227 " and "229 "), only a final
// reply line counts: a "227-" continuation line announces nothing.
func ParseServer(line []byte) (a Announce, ok bool, malformed bool) {
	if len(line) < 4 || line[3] != ' ' {
		return Announce{}, false, false
	}
	switch string(line[:3]) {
	case "227":
		// RFC 959 leaves the format open: "227 Entering Passive Mode
		// (h1,h2,h3,h4,p1,p2)"; real servers drop the parentheses or put a
		// period after "Mode". Take the first digit after the code.
		rest := line[4:]
		i := 0
		for i < len(rest) && (rest[i] < '0' || rest[i] > '9') {
			i++
		}
		a, _, err := parseHostPort(rest[i:])
		if err != errNone {
			return Announce{}, false, err == errSyntax
		}
		a.Kind = Pasv
		return a, true, false
	case "229":
		// "229 Entering Extended Passive Mode (|||port|)": the delimiter is
		// the character after '(' (RFC 2428 §3).
		rest := line[4:]
		i := 0
		for i < len(rest) && rest[i] != '(' {
			i++
		}
		if i+1 >= len(rest) {
			return Announce{}, false, true
		}
		d := rest[i+1]
		f := rest[i+1:]
		// f = d d d port d )
		if len(f) < 5 || f[1] != d || f[2] != d {
			return Announce{}, false, true
		}
		port, n, ok := number(f[3:], 65535)
		if !ok || port == 0 || 3+n >= len(f) || f[3+n] != d {
			return Announce{}, false, true
		}
		return Announce{Kind: Epsv, Port: uint16(port)}, true, false
	}
	return Announce{}, false, false
}

// parseHostPort parses "h1,h2,h3,h4,p1,p2" and returns what follows it;
// each number 0–255 (leading zeros allowed), port not 0.
func parseHostPort(b []byte) (Announce, []byte, parseErr) {
	var v [6]int
	b, err := numbers(b, v[:], ',')
	if err != errNone {
		return Announce{}, nil, err
	}
	port := v[4]<<8 | v[5]
	if port == 0 {
		return Announce{}, nil, errSyntax
	}
	addr := netip.AddrFrom4([4]byte{byte(v[0]), byte(v[1]), byte(v[2]), byte(v[3])})
	return Announce{Addr: addr, Port: uint16(port)}, b, errNone
}

// numbers parses len(v) numbers separated by sep and returns what follows
// the last one. Leading zeros are allowed, as nf_conntrack_ftp's
// try_number allows them; a number over 255 is errRange (the kernel would
// wrap it into the next byte).
func numbers(b []byte, v []int, sep byte) ([]byte, parseErr) {
	res := errNone
	for k := range v {
		n, used := digits(b)
		if used == 0 || used > 10 {
			return nil, errSyntax
		}
		if n > 255 {
			res = errRange
		}
		v[k] = n
		b = b[used:]
		if k < len(v)-1 {
			if len(b) == 0 || b[0] != sep {
				return nil, errSyntax
			}
			b = b[1:]
		}
	}
	return b, res
}

// digits reads a decimal number (its value capped) and how many digits it
// had.
func digits(b []byte) (n, used int) {
	for used < len(b) && b[used] >= '0' && b[used] <= '9' {
		n = min(n*10+int(b[used]-'0'), 1<<30)
		used++
	}
	return n, used
}

// parseEprt parses "<d>af<d>addr<d>port<d>" (RFC 2428 §2).
func parseEprt(b []byte) (Announce, parseErr) {
	if len(b) < 8 {
		return Announce{}, errSyntax
	}
	// As nf_conntrack_ftp's try_eprt: a delimiter that is no digit, the
	// family as one character, the delimiter again.
	d := b[0]
	if d < 33 || d > 126 || (d >= '0' && d <= '9') || b[2] != d || (b[1] != '1' && b[1] != '2') {
		return Announce{}, errSyntax
	}
	if b[1] == '1' {
		return eprt4(b[3:], d)
	}
	return eprt6(b[3:], d)
}

// eprt4 parses EPRT's IPv4 address and port, after the family, each
// followed by delimiter d.
func eprt4(b []byte, d byte) (Announce, parseErr) {
	// The address as try_number reads it: leading zeros allowed.
	var v [4]int
	rest, err := numbers(b, v[:], '.')
	if err == errSyntax || len(rest) == 0 || rest[0] != d {
		return Announce{}, errSyntax
	}
	port, n, ok := number(rest[1:], 65535)
	if !ok || port == 0 || 1+n >= len(rest) || rest[1+n] != d {
		return Announce{}, errSyntax
	}
	if err != errNone {
		return Announce{}, err
	}
	return Announce{Kind: Eprt, Addr: netip.AddrFrom4([4]byte{byte(v[0]), byte(v[1]), byte(v[2]), byte(v[3])}), Port: uint16(port)}, errNone
}

// eprt6 parses EPRT's IPv6 address and port, after the family, each
// followed by delimiter d.
func eprt6(b []byte, d byte) (Announce, parseErr) {
	end := 0
	for end < len(b) && b[end] != d {
		end++
	}
	if end == len(b) || end == 0 || end > 45 {
		return Announce{}, errSyntax
	}
	for _, c := range b[:end] {
		if c == '%' { // no zones
			return Announce{}, errSyntax
		}
	}
	addr, err := netip.ParseAddr(view(b[:end]))
	if err != nil || addr.Is4() {
		return Announce{}, errSyntax
	}
	b = b[end+1:]
	port, n, ok := number(b, 65535)
	if !ok || port == 0 || n >= len(b) || b[n] != d {
		return Announce{}, errSyntax
	}
	return Announce{Kind: Eprt, Addr: addr, Port: uint16(port)}, errNone
}

// number parses a decimal number of at most 5 digits, no larger than max.
func number(b []byte, max int) (n, used int, ok bool) {
	for used < len(b) && used < 6 && b[used] >= '0' && b[used] <= '9' {
		n = n*10 + int(b[used]-'0')
		used++
	}
	if used == 0 || used > 5 || n > max {
		return 0, 0, false
	}
	return n, used, true
}

func hasPrefixFold(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := b[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}
