package filter

import (
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

// The indexed classifier, for long chains (ARCHITECTURE.md, "Rule sets at
// scale"). A chain of bitsets costs (rules × distinct field values) bits to
// build, which grows with the square of a generated rule set. Instead each
// rule is indexed by one field it constrains (its source or destination
// addresses, or its destination or source ports: whichever value the fewest
// other rules share), in a tree of nested prefixes over that field; a
// lookup finds the packet's deepest prefix and walks up, and each
// candidate rule there is checked whole (flatRules). No rule is indexed
// by a set (-m set): a set's contents change without a compile. Rules
// that constrain none of those fields keep a bitset classifier of their own, over the
// small-domain fields only (protocol, state, interfaces, TCP flags, ICMP
// type), which makes it linear in their number.
// The first rule that matches, across all of them, is the first rule of
// the chain that matches.

// IndexMode chooses the classifier of each chain.
type IndexMode uint8

// Index modes.
const (
	// IndexAuto indexes chains longer than IndexAbove rules, and checks
	// those of up to LinearUpTo rules one by one.
	IndexAuto IndexMode = iota
	// IndexNever uses bitsets everywhere (tests, comparisons).
	IndexNever
	// IndexAlways indexes every chain (tests, comparisons).
	IndexAlways
)

// IndexAbove is the chain length from which IndexAuto indexes a chain:
// below it the bitset classifier is faster to run, and cheap to build
// (perf/RESULTS.md, "Rule sets at scale").
const IndexAbove = 1024

// Key fields, per family for addresses.
const (
	keySrc4 = iota
	keyDst4
	keySrc6
	keyDst6
	keySport
	keyDport
	numKeys
)

// familyKeys are the key indexes a packet of each family consults.
var familyKeys = [2][4]uint8{{keySrc4, keyDst4, keySport, keyDport}, {keySrc6, keyDst6, keySport, keyDport}}

// chainIndex is an indexed chain's classifier.
type chainIndex struct {
	n    int32
	flat flatRules
	keys [numKeys]keyIndex
	// rest is the bitset classifier of the rules no key indexes;
	// restIDs maps its rule numbers to the chain's (ascending).
	rest    cchain
	restIDs []int32
}

// keyIndex is one field's tree of nested ranges (prefixes, or port ranges
// cut into aligned blocks, which nest alike): bounds are the sorted starts
// of elementary intervals, node[i] the deepest tree node holding
// [bounds[i], bounds[i+1]) (-1: none); each node lists its rules.
type keyIndex struct {
	bounds []u128
	node   []int32
	nodes  []keyNode
	rules  []int32
}

type keyNode struct {
	parent int32
	lo, hi int32 // the node's rules: keyIndex.rules[lo:hi], ascending
}

type keyItem struct {
	lo, hi u128
	rule   int32
}

// indexCursor is what one packet looks up once per chain: its node in each
// key index and its bitset ids in the rest classifier.
type indexCursor struct {
	node [4]int32
	ids  [11]int32
	fam  uint8
	pr   probe
}

func buildIndex(rl []rules.Rule, b *builder, portID, setID func(string) int32) *chainIndex {
	ix := &chainIndex{n: int32(len(rl))}
	var items [numKeys][]keyItem
	var rest []rules.Rule
	for i, key := range chooseKeys(rl) {
		r := &rl[i]
		ix.flat.add(r, portID, setID)
		switch key {
		case keySrc4:
			addPrefixItems(&items, keySrc4, r.Src, int32(i))
		case keyDst4:
			addPrefixItems(&items, keyDst4, r.Dst, int32(i))
		case keySport, keyDport:
			ps := r.SPorts
			if key == keyDport {
				ps = r.DPorts
			}
			items[key] = appendPortItems(items[key], ps, int32(i))
		default:
			rest = append(rest, *r)
			ix.restIDs = append(ix.restIDs, int32(i))
		}
	}
	for k := range items {
		ix.keys[k] = buildKeyIndex(items[k])
	}
	ix.rest = cchain{n: len(rest), words: max(1, (len(rest)+63)/64)}
	rb := &builder{cc: &ix.rest, seed: b.seed, interned: map[uint64][]int32{}, names: b.names, ctx: b.ctx, anyL34: true}
	rb.build(rest)
	return ix
}

// chooseKeys picks each rule's key: among the fields it constrains to
// include a value (not negated), the one whose value the fewest rules of
// the chain share, so that a lookup's candidates stay few. keySrc4 and
// keyDst4 stand for both families; -1: none (the rest classifier).
func chooseKeys(rl []rules.Rule) []int8 {
	type field struct {
		key int8
		of  func(*rules.Rule) (string, bool)
	}
	fields := [...]field{
		{keySrc4, func(r *rules.Rule) (string, bool) { return addrKeyText(r.Src), len(r.Src) > 0 && !r.SrcNeg }},
		{keyDst4, func(r *rules.Rule) (string, bool) { return addrKeyText(r.Dst), len(r.Dst) > 0 && !r.DstNeg }},
		{keyDport, func(r *rules.Rule) (string, bool) { return portKeyText(r.DPorts), len(r.DPorts) > 0 && !r.DPortNeg }},
		{keySport, func(r *rules.Rule) (string, bool) { return portKeyText(r.SPorts), len(r.SPorts) > 0 && !r.SPortNeg }},
	}
	var shared [len(fields)]map[string]int
	for f := range fields {
		shared[f] = map[string]int{}
		for i := range rl {
			if k, ok := fields[f].of(&rl[i]); ok {
				shared[f][k]++
			}
		}
	}
	out := make([]int8, len(rl))
	for i := range rl {
		out[i] = -1
		best := 0
		for f := range fields {
			if k, ok := fields[f].of(&rl[i]); ok && (out[i] < 0 || shared[f][k] < best) {
				out[i], best = fields[f].key, shared[f][k]
			}
		}
	}
	return out
}

func addrKeyText(ps []netip.Prefix) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte(',')
	}
	return b.String()
}

func portKeyText(ps []rules.PortRange) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(portString(p))
		b.WriteByte(',')
	}
	return b.String()
}

func portString(p rules.PortRange) string { return itoa(int(p.Lo)) + ":" + itoa(int(p.Hi)) }

// addPrefixItems adds a rule's prefixes to the source (key keySrc4) or
// destination (keyDst4) indexes of their families, leaving out any that
// another prefix of the rule contains, so a lookup meets each rule once.
func addPrefixItems(items *[numKeys][]keyItem, key int, ps []netip.Prefix, rule int32) {
	for fam := 0; fam < 2; fam++ {
		var rs []addrRange
		for _, p := range ps {
			if p.Addr().Is6() == (fam == 1) {
				lo, hi := prefixRange(p)
				rs = append(rs, addrRange{lo, hi})
			}
		}
		slices.SortFunc(rs, func(a, b addrRange) int {
			if c := cmp128(a.lo, b.lo); c != 0 {
				return c
			}
			return cmp128(b.hi, a.hi)
		})
		k := key + 2*fam
		for j, rg := range rs {
			if j > 0 && !less128(rs[j-1].hi, rg.lo) && !less128(rs[j-1].hi, rg.hi) {
				rs[j] = rs[j-1] // contained in the previous one: keep that as the bound
				continue
			}
			items[k] = append(items[k], keyItem{rg.lo, rg.hi, rule})
		}
	}
}

// appendPortItems cuts a rule's (merged) port ranges into aligned blocks,
// which nest or are apart like prefixes.
func appendPortItems(items []keyItem, ps []rules.PortRange, rule int32) []keyItem {
	for _, p := range mergedPorts(ps) {
		for v, end := uint32(p.Lo), uint32(p.Hi); v <= end; {
			size := uint32(1) << 16
			if v != 0 {
				size = v & -v
			}
			for v+size-1 > end {
				size >>= 1
			}
			items = append(items, keyItem{u128{0, uint64(v)}, u128{0, uint64(v + size - 1)}, rule})
			v += size
		}
	}
	return items
}

// buildKeyIndex builds the tree of nested ranges: items sorted by start
// (a container before what it contains), equal ranges one node, then one
// sweep with a stack of open nodes gives each node its parent and each
// elementary interval its deepest node.
func buildKeyIndex(items []keyItem) keyIndex {
	slices.SortFunc(items, func(a, b keyItem) int {
		if c := cmp128(a.lo, b.lo); c != 0 {
			return c
		}
		if c := cmp128(b.hi, a.hi); c != 0 {
			return c
		}
		return int(a.rule - b.rule)
	})
	ki := keyIndex{bounds: []u128{{}}, node: []int32{-1}}
	var ranges []addrRange // of each node
	var stack []int32
	for i := 0; i < len(items); {
		rg := addrRange{items[i].lo, items[i].hi}
		n := int32(len(ki.nodes))
		nd := keyNode{lo: int32(len(ki.rules))}
		for ; i < len(items) && items[i].lo == rg.lo && items[i].hi == rg.hi; i++ {
			if r := items[i].rule; nd.lo == int32(len(ki.rules)) || ki.rules[len(ki.rules)-1] != r {
				ki.rules = append(ki.rules, r)
			}
		}
		nd.hi = int32(len(ki.rules))
		stack = ki.close(stack, ranges, rg.lo, false)
		nd.parent = -1
		if len(stack) > 0 {
			nd.parent = stack[len(stack)-1]
		}
		ki.nodes, ranges = append(ki.nodes, nd), append(ranges, rg)
		ki.mark(rg.lo, n)
		stack = append(stack, n)
	}
	ki.close(stack, ranges, u128{}, true)
	return ki
}

// close pops the open nodes that end before at (all of them if all),
// marking where each one's enclosing node takes over again.
func (ki *keyIndex) close(stack []int32, ranges []addrRange, at u128, all bool) []int32 {
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		if !all && !less128(ranges[top].hi, at) {
			break
		}
		stack = stack[:len(stack)-1]
		next, ok := inc128(ranges[top].hi)
		if !ok {
			continue
		}
		outer := int32(-1)
		if len(stack) > 0 {
			outer = stack[len(stack)-1]
		}
		ki.mark(next, outer)
	}
	return stack
}

// mark starts an elementary interval at at, held by node n.
func (ki *keyIndex) mark(at u128, n int32) {
	if k := len(ki.bounds) - 1; ki.bounds[k] == at {
		ki.node[k] = n
		return
	}
	ki.bounds, ki.node = append(ki.bounds, at), append(ki.node, n)
}

// lookup returns the deepest node holding v, or -1.
func (ki *keyIndex) lookup(v u128) int32 { return ki.node[lastAtMost(ki.bounds, v)] }

// scan returns the first rule after after and before best, among node n's
// and its ancestors' rules, that matches whole; best if none does.
func (ki *keyIndex) scan(n, after, best int32, fr *flatRules, pr *probe) int32 {
	for ; n >= 0; n = ki.nodes[n].parent {
		nd := ki.nodes[n]
		ids := ki.rules[nd.lo:nd.hi]
		for k := firstAbove(ids, after); k < len(ids) && ids[k] < best; k++ {
			if fr.match(ids[k], pr) {
				best = ids[k]
				break
			}
		}
	}
	return best
}

// firstAbove returns the index of the first id above after in ascending ids.
func firstAbove(ids []int32, after int32) int {
	lo, hi := 0, len(ids)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ids[m] <= after {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// start looks the packet up in every index of its family.
func (ix *chainIndex) start(cur *indexCursor, p *packet.Parsed, state uint8, in, out uint16, sets []*AddrSet) {
	cur.pr = probe{p: p, state: state, in: in, out: out, sets: sets}
	v6 := p.Kind == packet.IPv6
	cur.fam = 0
	if v6 {
		cur.fam = 1
	}
	sp, dp := p.SrcPort, p.DstPort
	if p.Proto != 6 && p.Proto != 17 && p.Proto != 132 {
		sp, dp = 0, 0
	}
	vals := [4]u128{addrKey(p.Src, v6), addrKey(p.Dst, v6), {0, uint64(sp)}, {0, uint64(dp)}}
	for k, key := range familyKeys[cur.fam] {
		cur.node[k] = ix.keys[key].lookup(vals[k])
	}
	if len(ix.restIDs) > 0 {
		cur.ids[0], cur.ids[1], cur.ids[2] = ix.rest.fields(p, state, in, out, cur.ids[3:])
	}
}

// next returns the chain's first rule after after that matches the packet
// whole, or -1.
func (ix *chainIndex) next(cur *indexCursor, after int32) int32 {
	best := ix.n
	for k, key := range familyKeys[cur.fam] {
		if n := cur.node[k]; n >= 0 {
			best = ix.keys[key].scan(n, after, best, &ix.flat, &cur.pr)
		}
	}
	if len(ix.restIDs) > 0 {
		best = ix.scanRest(cur, after, best)
	}
	if best == ix.n {
		return -1
	}
	return best
}

// scanRest is scan for the rules no key indexes: their bitsets give the
// candidates, each checked whole (the bitsets leave ICMP codes open).
func (ix *chainIndex) scanRest(cur *indexCursor, after, best int32) int32 {
	rc := &ix.rest
	k0 := firstAbove(ix.restIDs, after)
	for w := k0 / 64; w < rc.words; w++ {
		c := ^uint64(0)
		if w == k0/64 {
			c <<= k0 % 64
		}
		for _, id := range cur.ids {
			c &= rc.sets[id][w]
		}
		for ; c != 0; c &= c - 1 {
			ri := ix.restIDs[w*64+bits.TrailingZeros64(c)]
			if ri >= best {
				return best
			}
			if ix.flat.match(ri, &cur.pr) {
				return ri
			}
		}
	}
	return best
}

// bytes is the index's memory.
func (ix *chainIndex) bytes() int {
	n := ix.flat.bytes() + len(ix.restIDs)*4 + len(ix.rest.sets)*ix.rest.words*16
	for k := range ix.keys {
		ki := &ix.keys[k]
		n += len(ki.bounds)*16 + len(ki.node)*4 + len(ki.nodes)*12 + len(ki.rules)*4
	}
	return n
}
