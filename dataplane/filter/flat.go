package filter

import (
	"net/netip"
	"slices"
	"unsafe"

	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

// flatRules holds a chain's rules in a flat form that one rule can be
// checked in, for the indexed classifier (index.go): the index names a few
// candidates, and each is checked whole. Address and port lists are sorted,
// merged ranges in shared arrays, searched by bisection, so a rule with a
// million-entry set costs log n to check.
type flatRules struct {
	rules []flatRule
	addrs []addrRange
	ports []rules.PortRange
}

// span is a slice of flatRules.addrs or .ports.
type span struct{ off, n uint32 }

type addrRange struct{ lo, hi u128 }

// flatRule is one rule's matches. The zero value of a field means "any"
// where the flag bits say so.
type flatRule struct {
	src4, src6, dst4, dst6 span
	sports, dports         span
	in, out                int32 // port id, or -1: any
	srcSet, dstSet         int32 // set index (Filter.sets), or -1: none
	proto                  int16 // -1: any
	icmpType, icmpCode     int16 // -1: any
	fam, states            uint8
	mask, comp             uint8
	flags                  flatFlag
}

type flatFlag uint32

const (
	ffSrcAny flatFlag = 1 << iota
	ffDstAny
	ffSPortAny
	ffDPortAny
	ffSrcNeg
	ffDstNeg
	ffSPortNeg
	ffDPortNeg
	ffProtoNeg
	ffStateNeg
	ffInNeg
	ffOutNeg
	ffTCPFlags
	ffTCPFlagsNeg
	ffICMPNeg
	ffSrcSetNeg
	ffDstSetNeg
)

func (f flatFlag) has(b flatFlag) bool { return f&b != 0 }

// add appends r in flat form; portID gives an -i/-o name's port id.
func (fr *flatRules) add(r *rules.Rule, portID func(string) int32, setID func(string) int32) {
	x := flatRule{in: -1, out: -1, srcSet: setID(r.SrcSet), dstSet: setID(r.DstSet), proto: int16(r.Proto), icmpType: int16(r.ICMPType), icmpCode: int16(r.ICMPCode),
		fam: uint8(r.Family), states: r.States, mask: r.TCPFlagsMask, comp: r.TCPFlagsComp}
	for _, b := range [...]struct {
		on   bool
		flag flatFlag
	}{
		{len(r.Src) == 0, ffSrcAny}, {len(r.Dst) == 0, ffDstAny}, {len(r.SPorts) == 0, ffSPortAny},
		{len(r.DPorts) == 0, ffDPortAny}, {r.SrcNeg, ffSrcNeg}, {r.DstNeg, ffDstNeg}, {r.SPortNeg, ffSPortNeg},
		{r.DPortNeg, ffDPortNeg}, {r.ProtoNeg, ffProtoNeg}, {r.StateNeg, ffStateNeg}, {r.InNeg, ffInNeg},
		{r.OutNeg, ffOutNeg}, {r.TCPFlags, ffTCPFlags}, {r.TCPFlagsNeg, ffTCPFlagsNeg}, {r.ICMPNeg, ffICMPNeg},
		{r.SrcSetNeg, ffSrcSetNeg}, {r.DstSetNeg, ffDstSetNeg},
	} {
		if b.on {
			x.flags |= b.flag
		}
	}
	if r.In != "" {
		x.in = portID(r.In)
	}
	if r.Out != "" {
		x.out = portID(r.Out)
	}
	x.src4, x.src6 = fr.addAddrs(r.Src, false), fr.addAddrs(r.Src, true)
	x.dst4, x.dst6 = fr.addAddrs(r.Dst, false), fr.addAddrs(r.Dst, true)
	x.sports, x.dports = fr.addPorts(r.SPorts), fr.addPorts(r.DPorts)
	fr.rules = append(fr.rules, x)
}

// addAddrs appends the prefixes of one family as sorted, merged ranges.
func (fr *flatRules) addAddrs(ps []netip.Prefix, v6 bool) span {
	s := span{off: uint32(len(fr.addrs))}
	for _, rg := range mergedRanges(ps, v6) {
		fr.addrs = append(fr.addrs, rg)
	}
	s.n = uint32(len(fr.addrs)) - s.off
	return s
}

// mergedRanges returns the prefixes of one family as sorted ranges, with
// overlapping and adjacent ones merged.
func mergedRanges(ps []netip.Prefix, v6 bool) []addrRange {
	var out []addrRange
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			lo, hi := prefixRange(p)
			out = append(out, addrRange{lo, hi})
		}
	}
	slices.SortFunc(out, func(a, b addrRange) int { return cmp128(a.lo, b.lo) })
	m := out[:0]
	for _, rg := range out {
		if k := len(m) - 1; k >= 0 {
			if next, ok := inc128(m[k].hi); !ok || !less128(next, rg.lo) {
				if less128(m[k].hi, rg.hi) {
					m[k].hi = rg.hi
				}
				continue
			}
		}
		m = append(m, rg)
	}
	return m
}

func cmp128(a, b u128) int {
	switch {
	case less128(a, b):
		return -1
	case a == b:
		return 0
	}
	return 1
}

// addPorts appends port ranges, sorted and merged.
func (fr *flatRules) addPorts(ps []rules.PortRange) span {
	s := span{off: uint32(len(fr.ports))}
	fr.ports = append(fr.ports, mergedPorts(ps)...)
	s.n = uint32(len(fr.ports)) - s.off
	return s
}

func mergedPorts(ps []rules.PortRange) []rules.PortRange {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b rules.PortRange) int { return int(a.Lo) - int(b.Lo) })
	m := out[:0]
	for _, p := range out {
		if k := len(m) - 1; k >= 0 && int(p.Lo) <= int(m[k].Hi)+1 {
			m[k].Hi = max(m[k].Hi, p.Hi)
			continue
		}
		m = append(m, p)
	}
	return m
}

// probe is what a packet is matched with: the packet, its state bit, its
// ports, and the rule set's address sets.
type probe struct {
	p       *packet.Parsed
	state   uint8
	in, out uint16
	sets    []*AddrSet
}

// match reports whether rule i of the chain matches the packet, as
// iptables would test every match of it.
func (fr *flatRules) match(i int32, pr *probe) bool {
	x := &fr.rules[i]
	return x.matchHead(pr.p, pr.state, pr.in, pr.out) && x.matchL4(fr, pr.p) && x.matchAddrs(fr, pr.p) &&
		(x.srcSet < 0 && x.dstSet < 0 || x.matchSets(pr))
}

// matchSets checks -m set matches.
func (x *flatRule) matchSets(pr *probe) bool {
	v6 := pr.p.Kind == packet.IPv6
	if x.srcSet >= 0 && pr.sets[x.srcSet].Contains(&pr.p.Src, v6) == x.flags.has(ffSrcSetNeg) {
		return false
	}
	return x.dstSet < 0 || pr.sets[x.dstSet].Contains(&pr.p.Dst, v6) != x.flags.has(ffDstSetNeg)
}

// matchHead checks family, protocol, state and interfaces.
func (x *flatRule) matchHead(p *packet.Parsed, state uint8, in, out uint16) bool {
	v6 := p.Kind == packet.IPv6
	switch {
	case x.fam == 4 && v6, x.fam == 6 && !v6:
		return false
	case x.proto >= 0 && (int16(p.Proto) == x.proto) == x.flags.has(ffProtoNeg):
		return false
	case x.states != 0 && (x.states&state != 0) == x.flags.has(ffStateNeg):
		return false
	case x.in >= 0 && (int32(in) == x.in) == x.flags.has(ffInNeg):
		return false
	case x.out >= 0 && (int32(out) == x.out) == x.flags.has(ffOutNeg):
		return false
	}
	return true
}

// matchL4 checks TCP flags, ICMP type and code, and ports.
func (x *flatRule) matchL4(fr *flatRules, p *packet.Parsed) bool {
	if x.flags.has(ffTCPFlags) && (p.TCPFlags&x.mask == x.comp) == x.flags.has(ffTCPFlagsNeg) {
		return false
	}
	if x.icmpType >= 0 {
		m := int16(p.ICMPType) == x.icmpType && (x.icmpCode < 0 || int16(p.ICMPCode) == x.icmpCode)
		if m == x.flags.has(ffICMPNeg) {
			return false
		}
	}
	sp, dp := p.SrcPort, p.DstPort
	if p.Proto != 6 && p.Proto != 17 && p.Proto != 132 {
		sp, dp = 0, 0
	}
	if !x.flags.has(ffSPortAny) && fr.inPorts(x.sports, sp) == x.flags.has(ffSPortNeg) {
		return false
	}
	return x.flags.has(ffDPortAny) || fr.inPorts(x.dports, dp) != x.flags.has(ffDPortNeg)
}

// matchAddrs checks the source and destination addresses.
func (x *flatRule) matchAddrs(fr *flatRules, p *packet.Parsed) bool {
	v6 := p.Kind == packet.IPv6
	src, dst := x.src4, x.dst4
	if v6 {
		src, dst = x.src6, x.dst6
	}
	if !x.flags.has(ffSrcAny) && fr.inAddrs(src, addrKey(p.Src, v6)) == x.flags.has(ffSrcNeg) {
		return false
	}
	return x.flags.has(ffDstAny) || fr.inAddrs(dst, addrKey(p.Dst, v6)) != x.flags.has(ffDstNeg)
}

func (fr *flatRules) inPorts(s span, v uint16) bool {
	rs := fr.ports[s.off : s.off+s.n]
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].Hi < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].Lo <= v
}

func (fr *flatRules) inAddrs(s span, v u128) bool { return inRanges(fr.addrs[s.off:s.off+s.n], v) }

// inRanges reports whether v is in one of rs (sorted, disjoint ranges),
// by bisection. Flat rules and address sets share it.
func inRanges(rs []addrRange, v u128) bool {
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if less128(rs[m].hi, v) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && !less128(v, rs[lo].lo)
}

// bytes is the flat rules' memory.
func (fr *flatRules) bytes() int {
	return len(fr.rules)*int(unsafe.Sizeof(flatRule{})) + len(fr.addrs)*32 + len(fr.ports)*4
}
