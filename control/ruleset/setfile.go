package ruleset

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/dpfw/dpfw/control/config"
)

// setEntries returns rules.sets[i]'s prefixes: its addresses, or its
// file's entries. pos names the set in messages.
func setEntries(cfg *config.Config, i int, pos string) ([]netip.Prefix, error) {
	s := cfg.Rules.Sets[i]
	switch {
	case s.File != "" && len(s.Addresses) > 0:
		return nil, fmt.Errorf("%s: give the set's addresses or its file, not both", pos)
	case s.File != "":
		ps, err := ParseSetFile(s.Name, cfg.SetPath(i), cfg.SetText(i))
		if err == nil && len(ps) == 0 {
			err = fmt.Errorf("%s.file: %s: the set %q is empty: a truncated set file must not change what the rules match; list at least one address", pos, cfg.SetPath(i), s.Name)
		}
		return ps, err
	case len(s.Addresses) == 0:
		return nil, fmt.Errorf("%s.addresses: the set %q is empty", pos, s.Name)
	}
	var ps []netip.Prefix
	var errs []error
	for j, a := range s.Addresses {
		p, err := parsePrefix(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.addresses[%d]: %q: want an address or CIDR, e.g. 198.18.0.0/15", pos, j, a))
			continue
		}
		ps = append(ps, p)
	}
	return ps, errors.Join(errs...)
}

// maxSetErrors stops reading a set file after this many bad lines.
const maxSetErrors = 20

// ParseSetFile reads the entries of set name from a set file: one address,
// CIDR (host bits are cleared, as ipset does) or range (a-b) per line,
// with blank lines and # comments; or ipset save output, whose "add NAME
// ENTRY" lines for this set are taken (other sets' lines are skipped, and
// "create" must give a type of addresses: hash:ip, hash:net or
// bitmap:ip). path names the file in messages, which say path:line:col.
func ParseSetFile(name, path, text string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	var errs []error
	ipsetSave, found := false, false
	lineNo := 0
	for line := range strings.SplitSeq(text, "\n") {
		if len(errs) >= maxSetErrors {
			break
		}
		lineNo++
		at := func(col int, tok, msg string) error {
			return fmt.Errorf("%s:%d:%d: %q: %s", path, lineNo, col, tok, msg)
		}
		col, entry, err := setLine(name, line, &ipsetSave, &found, at)
		switch {
		case err != nil:
			errs = append(errs, err)
		case entry != "":
			got, err := parseEntry(entry)
			if err != nil {
				errs = append(errs, at(col, entry, err.Error()))
				continue
			}
			ps = append(ps, got...)
		}
	}
	if len(errs) == maxSetErrors {
		errs = append(errs, fmt.Errorf("%s: stopped after %d errors", path, maxSetErrors))
	}
	if ipsetSave && !found && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: an ipset save file with no set named %q (no \"create %s\" or \"add %s\" line): name the set as the file does", path, name, name, name))
	}
	return ps, errors.Join(errs...)
}

// setLine reads one line: it returns the entry it holds and its column
// ("" for none: a blank or comment line, another set's, a create line).
func setLine(name, line string, ipsetSave, found *bool, at func(int, string, string) error) (int, string, error) {
	trimmed := strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	col := strings.Index(line, trimmed) + 1
	if trimmed == "" || trimmed[0] == '#' {
		return 0, "", nil
	}
	f := strings.Fields(trimmed)
	switch f[0] {
	case "create":
		*ipsetSave = true
		if len(f) < 3 {
			return 0, "", at(col, trimmed, "want create NAME TYPE [options] (ipset save)")
		}
		if f[1] != name {
			return 0, "", nil
		}
		*found = true
		if t := f[2]; t != "hash:ip" && t != "hash:net" && t != "bitmap:ip" {
			return 0, "", at(col+strings.Index(trimmed, t), t, "dpfw sets hold addresses: want type hash:ip, hash:net or bitmap:ip")
		}
		return 0, "", nil
	case "add":
		*ipsetSave = true
		if len(f) < 3 {
			return 0, "", at(col, trimmed, "want add NAME ENTRY [options] (ipset save)")
		}
		if f[1] != name {
			return 0, "", nil
		}
		*found = true
		for _, opt := range f[3:] {
			if opt == "nomatch" {
				return 0, "", at(col+strings.Index(trimmed, opt), opt, "nomatch entries (exceptions inside a set) are not supported: leave the excepted addresses out of the set")
			}
		}
		return col + strings.Index(trimmed, f[2]), f[2], nil
	}
	if len(f) > 1 {
		return 0, "", at(col+len(f[0])+1, f[1], "one address, CIDR or range per line")
	}
	return col, f[0], nil
}

// parseEntry parses an address, a CIDR or a range a-b into prefixes.
func parseEntry(s string) ([]netip.Prefix, error) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(lo)
		b, err2 := netip.ParseAddr(hi)
		a, b = a.Unmap(), b.Unmap()
		if err1 != nil || err2 != nil || a.Zone() != "" || b.Zone() != "" || a.Is4() != b.Is4() || b.Less(a) {
			return nil, errors.New("want a range of one family, low-high, e.g. 198.18.0.1-198.18.0.9")
		}
		return rangePrefixes(a, b), nil
	}
	if strings.IndexByte(s, '/') < 0 {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, errors.New("want an address, CIDR or range, e.g. 198.18.0.1, 198.18.0.0/15 or 198.18.0.1-198.18.0.9")
		}
		return []netip.Prefix{netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, errors.New("want an address, CIDR or range, e.g. 198.18.0.1, 198.18.0.0/15 or 198.18.0.1-198.18.0.9")
	}
	return []netip.Prefix{p.Masked()}, nil
}

// rangePrefixes covers [a, b] with the fewest prefixes.
func rangePrefixes(a, b netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := 0
		for ; bits < a.BitLen(); bits++ {
			p := netip.PrefixFrom(a, bits)
			if m := p.Masked(); m.Addr() == a && !b.Less(lastAddr(m)) {
				break
			}
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastAddr(p)
		if !last.Less(b) {
			return out
		}
		a = last.Next()
	}
}

// lastAddr is a prefix's last address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
