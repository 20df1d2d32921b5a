package filter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/dpfw/dpfw/dataplane/rules"
)

// AddrSet is a compiled address set (-m set --match-set): its prefixes as
// sorted, merged ranges, IPv4 in 8 bytes a range and IPv6 in 32, searched
// by bisection. Rules refer to a set by its index in the Filter, so a set's
// contents can be replaced without compiling the rules (WithSets).
type AddrSet struct {
	Name string
	// Entries is how many addresses and prefixes the set was given.
	Entries int
	v4      []range4
	v6      []addrRange
	// fam is the family of every entry (rules.Family, 0: mixed or empty);
	// the parser gave the rules that use the set this family.
	fam rules.Family
}

type range4 struct{ lo, hi uint32 }

// NewAddrSet compiles a set.
func NewAddrSet(name string, ps []netip.Prefix) *AddrSet {
	s := &AddrSet{Name: name, Entries: len(ps), fam: familyOf(ps)}
	for _, rg := range mergedRanges(ps, true) {
		s.v6 = append(s.v6, rg)
	}
	var v4 []range4
	for _, p := range ps {
		if p.Addr().Is4() {
			lo, hi := prefixRange(p)
			v4 = append(v4, range4{uint32(lo.lo), uint32(hi.lo)})
		}
	}
	slices.SortFunc(v4, func(a, b range4) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	for _, rg := range v4 {
		if k := len(s.v4) - 1; k >= 0 && uint64(rg.lo) <= uint64(s.v4[k].hi)+1 {
			s.v4[k].hi = max(s.v4[k].hi, rg.hi)
			continue
		}
		s.v4 = append(s.v4, rg)
	}
	s.v4 = slices.Clip(s.v4)
	return s
}

func familyOf(ps []netip.Prefix) rules.Family {
	fam := rules.Family(0)
	for i, p := range ps {
		f := rules.Family(4)
		if p.Addr().Is6() {
			f = 6
		}
		if i > 0 && f != fam {
			return 0
		}
		fam = f
	}
	return fam
}

// Contains reports whether the address (16 bytes, IPv4 in the first 4
// when !v6) is in the set.
func (s *AddrSet) Contains(a *[16]byte, v6 bool) bool {
	if !v6 {
		v := binary.BigEndian.Uint32(a[:4])
		rs := s.v4
		lo, hi := 0, len(rs)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if rs[m].hi < v {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo < len(rs) && rs[lo].lo <= v
	}
	return inRanges(s.v6, addrKey(*a, true))
}

// Bytes is the set's memory.
func (s *AddrSet) Bytes() int { return len(s.v4)*8 + len(s.v6)*32 }

// Ranges is how many merged ranges the set holds, by family.
func (s *AddrSet) Ranges() (v4, v6 int) { return len(s.v4), len(s.v6) }

// Sets returns the compiled sets, by name order of first use.
func (f *Filter) Sets() []*AddrSet { return f.sets }

// compileSets compiles every set the rules refer to, and gives each its
// index (setIndex).
func (f *Filter) compileSets(rs *rules.Ruleset) {
	f.setIndex = map[string]int32{}
	use := func(name string) {
		if _, ok := f.setIndex[name]; name == "" || ok {
			return
		}
		f.setIndex[name] = int32(len(f.sets))
		f.sets = append(f.sets, NewAddrSet(name, rs.Sets[name]))
	}
	for _, name := range rs.Order {
		for i := range rs.Chains[name].Rules {
			r := &rs.Chains[name].Rules[i]
			use(r.SrcSet)
			use(r.DstSet)
		}
	}
}

// setID returns the index of the named set, or -1 for "".
func (f *Filter) setID(name string) int32 {
	if name == "" {
		return -1
	}
	return f.setIndex[name]
}

// WithSets returns f with the sets' contents replaced by sets (every set
// f's rules use must be there), as generation gen, without compiling the
// rules again: the chains are shared with f, and the counters can be too
// (the decisions are the same). A set whose entries change family (all
// IPv4 before, some IPv6 now) changes what the parser made of the rules
// that use it, and is refused: compile the rule set again then.
func (f *Filter) WithSets(sets map[string][]netip.Prefix, gen uint32) (*Filter, error) {
	g := *f
	g.Gen = gen
	g.sets = make([]*AddrSet, len(f.sets))
	for i, old := range f.sets {
		ps, ok := sets[old.Name]
		if !ok {
			return nil, fmt.Errorf("set %q is used by the rules and missing from the new sets", old.Name)
		}
		s := NewAddrSet(old.Name, ps)
		if s.fam != old.fam {
			return nil, fmt.Errorf("set %q changes family (%s to %s): the rules that use it must be parsed again", old.Name, famName(old.fam), famName(s.fam))
		}
		g.sets[i] = s
	}
	rs := *f.Ruleset
	rs.Sets = sets
	g.Ruleset = &rs
	g.Stats.Bytes -= f.Stats.SetBytes
	g.Stats.SetEntries, g.Stats.SetBytes = 0, 0
	for _, st := range g.sets {
		g.Stats.SetEntries, g.Stats.SetBytes = g.Stats.SetEntries+st.Entries, g.Stats.SetBytes+st.Bytes()
	}
	g.Stats.Bytes += g.Stats.SetBytes
	return &g, nil
}

func famName(f rules.Family) string {
	switch f {
	case 4:
		return "IPv4"
	case 6:
		return "IPv6"
	}
	return "mixed"
}
