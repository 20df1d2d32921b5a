package filter

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"slices"
	"sort"

	"github.com/dpfw/dpfw/dataplane/reject"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

// Hook is where a packet enters the rule set.
type Hook uint8

// Hooks. Every packet traverses FORWARD; on links that declare an inside
// port, a packet headed for the inside then traverses INPUT, and one leaving
// it OUTPUT, so host-firewall rules read as written.
const (
	HookForward Hook = iota
	HookInput
	HookOutput
	numHooks
)

// NoPort is the port id of "no port" (e.g. -o on a dropped packet).
const NoPort = 0xffff

// Env is what the compiler needs to know about the data plane.
type Env struct {
	// Ports maps port names (as used by -i/-o) to port ids.
	Ports map[string]uint16
	// Context, if set, abandons the compilation when it is done (a reload
	// past its deadline): Compile then returns its error.
	Context context.Context
	// Index chooses each chain's classifier (IndexAuto: by its length).
	Index IndexMode
}

// Ctx is who classifies a packet, and when.
type Ctx struct {
	// State is the classifying worker's part of the rule set's State
	// (its rate-limit buckets); only that worker may use it. It may be nil
	// for a rule set without rate limits.
	State *WorkerState
	// Now is the worker's clock (ns, monotonic) for rate limits.
	Now int64
	// Path, when set (a traced packet), records what the packet matched.
	Path *Path
}

// MaxPath is the most steps a Path records.
const MaxPath = 24

// Path is what a traced packet went through, in order: every rule whose
// matches held (by rule id: LOG rules, jumps and RETURNs included), and
// the policy of a built-in chain that decided (as PolicyStep(chain)).
type Path struct {
	Steps [MaxPath]int32
	N     uint8
	// Truncated is set when there were more than MaxPath steps.
	Truncated bool
}

// PolicyStep is the Path step of chain index ci's policy.
func PolicyStep(ci int32) int32 { return ^ci }

// StepDecision is the decision id a Path step stands for (DecisionName
// names it: "web#2", "FORWARD policy").
func (f *Filter) StepDecision(step int32) uint32 {
	if step < 0 {
		return uint32(len(f.Rules) + int(^step))
	}
	return uint32(step)
}

func (p *Path) add(step int32) {
	if p == nil {
		return
	}
	if int(p.N) == len(p.Steps) {
		p.Truncated = true
		return
	}
	p.Steps[p.N] = step
	p.N++
}

// Filter is a compiled, immutable rule set. Its mutable part (counters,
// rate-limit buckets) is a State beside it: see Install and Active.
type Filter struct {
	// Gen is the rule-set generation, bumped on every successful reload;
	// connection entries cache verdicts tagged with it.
	Gen    uint32
	chains []cchain
	hooks  [2][numHooks]int32 // chain index per family (IPv4, IPv6) and hook
	// Rules lists every rule, indexed by rule id (chains' rules in order).
	Rules []rules.Rule
	// ChainOf gives the chain index of each rule id.
	ChainOf []int32
	// Ruleset is the source.
	Ruleset *rules.Ruleset
	// Stats of the compilation.
	Stats CompileStats

	// sets are the address sets the rules use, by index; setIndex gives
	// a name's index.
	sets     []*AddrSet
	setIndex map[string]int32

	ruleVerdict   []Verdict // by rule id: the verdict of terminal targets
	rejectKind    []reject.Kind
	limits        []*rules.RateLimit
	limitRule     []int32 // rule id of each limit
	flagSensitive bool
	usesState     bool
	acceptsAll    bool
	consts        constants
}

// CompileStats describe a compiled filter.
type CompileStats struct {
	Rules    int
	Bitsets  int // distinct interned bitsets
	Bytes    int // approximate memory of the classifier
	MaxWords int // bitset words of the largest bitset-classified chain
	Indexed  int // chains classified by the index (index.go)
	Linear   int // short chains checked rule by rule
	// Sets, SetEntries and SetBytes describe the address sets the rules
	// use (in Bytes too).
	Sets, SetEntries, SetBytes int
}

type u128 struct{ hi, lo uint64 }

func less128(a, b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func addrKey(a [16]byte, v6 bool) u128 {
	if !v6 {
		return u128{0, uint64(binary.BigEndian.Uint32(a[:4]))}
	}
	return u128{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

// rangeIndex maps a value to the bitset of rules matching it: bounds are the
// sorted interval starts; sets[i] is the bitset of [bounds[i], bounds[i+1]).
type rangeIndex struct {
	bounds []u128
	sets   []int32
}

func (ri *rangeIndex) lookup(v u128) int32 { return ri.sets[lastAtMost(ri.bounds, v)] }

// lastAtMost returns the index of the last of the sorted bounds that is at
// most v (bounds[0] is always 0), by bisection. The bitset and the indexed
// classifiers share it.
func lastAtMost(bounds []u128, v u128) int {
	lo, hi := 0, len(bounds)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if less128(v, bounds[m]) {
			hi = m
		} else {
			lo = m
		}
	}
	return lo
}

type portIndex struct {
	bounds []uint16
	sets   []int32
}

func (pi *portIndex) lookup(v uint16) int32 {
	lo, hi := 0, len(pi.bounds)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if v < pi.bounds[m] {
			hi = m
		} else {
			lo = m
		}
	}
	return pi.sets[lo]
}

// cchain is one compiled chain.
type cchain struct {
	name    string
	builtin bool
	policy  Verdict
	first   int // rule id of the chain's first rule
	n       int
	words   int
	// sets is the chain's interned bitsets; summaries[i] has bit w set iff
	// sets[i][w] != 0.
	sets      [][]uint64
	summaries [][]uint64
	// Field indexes (bitset ids).
	family [2]int32 // [0] IPv4, [1] IPv6
	// bt holds the 256-entry tables (protocol, TCP flags, ICMP type):
	// 3 KB, allocated only for a chain with rules.
	bt                     *byteTables
	src4, dst4, src6, dst6 rangeIndex
	sport, dport           portIndex
	state                  [8]int32 // by state bit index
	in, out                []int32  // by port id; last entry: unknown port
	// Residual per rule: ICMP code (-1 any) and whether it is negated with
	// the type; the sets of -m set (-1: none), if hasSets.
	icmpCode       []int16
	srcSet, dstSet []int32
	hasSets        bool
	// limit per rule: index into Filter.limits, or -1; hasLimits is set
	// when any is not.
	limit     []int32
	hasLimits bool
	// action per rule: verdict or jump (chain index) or log/return.
	action []action
	// index, if set, classifies the chain instead of the bitsets above
	// (a long chain: index.go); linear, if set, does (a short one: each
	// rule checked in turn).
	index  *chainIndex
	linear *flatRules
}

type actionKind uint8

const (
	actAccept actionKind = iota
	actDrop
	actReject
	actLog
	actReturn
	actJump
)

type action struct {
	kind  actionKind
	chain int32
}

// Compile turns a parsed rule set into a Filter.
func Compile(rs *rules.Ruleset, env Env, gen uint32) (*Filter, error) {
	if n := rs.NumRules() + len(rs.Chains); n > rules.MaxDecisions {
		// Checked before any work (the parser checks it too, as it reads).
		return nil, fmt.Errorf("the rule set has %d rules and chains; dpfw supports at most %d (each has a 20-bit id that connection entries cache): split it between firewalls, or match many addresses with one rule and -m set", n, rules.MaxDecisions)
	}
	f := &Filter{Gen: gen, Ruleset: rs, Rules: make([]rules.Rule, 0, rs.NumRules()), ChainOf: make([]int32, 0, rs.NumRules()),
		chains: make([]cchain, 0, len(rs.Order))}
	index := map[string]int32{}
	for _, name := range rs.Order {
		index[name] = int32(len(index))
	}
	if err := checkPorts(rs, env); err != nil {
		return nil, err
	}
	maxPort := 0
	for _, id := range env.Ports {
		maxPort = max(maxPort, int(id)+1)
	}
	names := make([]string, maxPort+1) // by port id; the last is "no port"
	for n, id := range env.Ports {
		names[id] = n
	}
	seed := maphash.MakeSeed()
	f.compileSets(rs)
	for _, st := range f.sets {
		f.Stats.Sets, f.Stats.SetEntries, f.Stats.SetBytes = f.Stats.Sets+1, f.Stats.SetEntries+st.Entries, f.Stats.SetBytes+st.Bytes()
	}
	f.Stats.Bytes += f.Stats.SetBytes
	for _, name := range rs.Order {
		if err := f.compileChain(name, rs.Chains[name], index, names, seed, env); err != nil {
			return nil, err
		}
	}
	f.ruleVerdicts()
	f.acceptsAll = len(f.Rules) == 0
	for i := range f.chains {
		if f.chains[i].builtin && f.chains[i].policy != Accept {
			f.acceptsAll = false
		}
	}
	for h, name := range [numHooks]string{HookForward: "FORWARD", HookInput: "INPUT", HookOutput: "OUTPUT"} {
		f.hooks[0][h] = index[name]
		f.hooks[1][h] = index[name]
		if ci, ok := index[rules.V6Prefix+name]; ok {
			f.hooks[1][h] = ci // a merged rule set: IPv6 has its own chains
		}
	}
	f.Stats.Rules = len(f.Rules)
	f.computeConstants()
	return f, nil
}

// checkPorts refuses a rule whose -i or -o names no port.
func checkPorts(rs *rules.Ruleset, env Env) error {
	for _, name := range rs.Order {
		ch := rs.Chains[name]
		for i := range ch.Rules {
			r := &ch.Rules[i]
			for _, ifc := range []string{r.In, r.Out} {
				if ifc == "" {
					continue
				}
				if _, ok := env.Ports[ifc]; !ok {
					return &rules.ParseError{Pos: r.Pos, Token: ifc, Msg: fmt.Sprintf("no port named %q; -i/-o name dpfw ports: %s", ifc, portNames(env))}
				}
			}
		}
	}
	return nil
}

// targetKinds are the built-in targets' actions; any other target is a
// jump to the chain of that name.
var targetKinds = map[string]actionKind{
	"ACCEPT": actAccept, "DROP": actDrop, "REJECT": actReject, "LOG": actLog, "RETURN": actReturn,
}

// compileChain builds one chain's classifier and actions and appends it.
func (f *Filter) compileChain(name string, ch *rules.Chain, index map[string]int32, names []string, seed maphash.Seed, env Env) error {
	cc := cchain{name: name, builtin: rules.IsBuiltinChain(name), first: len(f.Rules), n: len(ch.Rules)}
	cc.policy = Accept
	if ch.Policy == "DROP" {
		cc.policy = Drop
	}
	cc.words = max(1, (cc.n+63)/64)
	f.Rules = append(f.Rules, ch.Rules...)
	for range ch.Rules {
		f.ChainOf = append(f.ChainOf, index[name])
	}
	b := &builder{cc: &cc, seed: seed, interned: map[uint64][]int32{}, names: names, ctx: env.Context}
	portID := func(name string) int32 { return int32(env.Ports[name]) }
	switch {
	case cc.n == 0:
		// Nothing to classify: Run goes straight to the policy.
	case indexed(env.Index, cc.n):
		cc.index = buildIndex(ch.Rules, b, portID, f.setID)
		f.Stats.Indexed++
		f.Stats.Bytes += cc.index.bytes()
	case env.Index == IndexAuto && cc.n <= LinearUpTo:
		// A few rules: checking each whole is cheaper than eleven
		// field lookups.
		cc.linear = &flatRules{}
		for i := range ch.Rules {
			cc.linear.add(&ch.Rules[i], portID, f.setID)
		}
		f.Stats.Linear++
		f.Stats.Bytes += cc.linear.bytes()
	default:
		b.build(ch.Rules)
	}
	if b.ctx != nil && b.ctx.Err() != nil {
		return fmt.Errorf("compiling chain %s: %w", name, context.Cause(b.ctx))
	}
	for i := range ch.Rules {
		r := &ch.Rules[i]
		a := action{kind: actJump, chain: index[r.Target]}
		if k, ok := targetKinds[r.Target]; ok {
			a = action{kind: k}
		}
		cc.action = append(cc.action, a)
		cc.icmpCode = append(cc.icmpCode, int16(r.ICMPCode))
		cc.srcSet, cc.dstSet = append(cc.srcSet, f.setID(r.SrcSet)), append(cc.dstSet, f.setID(r.DstSet))
		cc.hasSets = cc.hasSets || r.SrcSet != "" || r.DstSet != ""
		li := int32(-1)
		if r.Limit != nil {
			li = int32(len(f.limits))
			cc.hasLimits = true
			f.limits = append(f.limits, r.Limit)
			f.limitRule = append(f.limitRule, int32(cc.first+i))
		}
		cc.limit = append(cc.limit, li)
	}
	f.Stats.Bitsets += len(cc.sets)
	f.Stats.Bytes += len(cc.sets) * cc.words * 8 * 2
	f.Stats.MaxWords = max(f.Stats.MaxWords, cc.words)
	f.chains = append(f.chains, cc)
	return nil
}

// indexed reports whether a chain of n rules gets the indexed classifier.
func indexed(m IndexMode, n int) bool {
	switch m {
	case IndexNever:
		return false
	case IndexAlways:
		return n > 0
	}
	return n > IndexAbove
}

// ruleVerdicts sets each rule's terminal verdict and REJECT answer, and
// what the rule set needs per packet (TCP flags, conntrack state).
func (f *Filter) ruleVerdicts() {
	f.ruleVerdict = make([]Verdict, len(f.Rules))
	f.rejectKind = make([]reject.Kind, len(f.Rules))
	for i := range f.Rules {
		r := &f.Rules[i]
		switch r.Target {
		case "ACCEPT":
			f.ruleVerdict[i] = Accept
		case "REJECT":
			f.ruleVerdict[i] = Reject
			f.rejectKind[i] = reject.Parse(r.RejectWith)
		default:
			f.ruleVerdict[i] = Drop
		}
		if r.TCPFlags {
			f.flagSensitive = true
		}
		if r.States != 0 {
			f.usesState = true
		}
	}
}

func portNames(env Env) string {
	var n []string
	for k := range env.Ports {
		n = append(n, k)
	}
	slices.Sort(n)
	return fmt.Sprint(n)
}

// builder interns bitsets for one chain.
type builder struct {
	cc       *cchain
	seed     maphash.Seed
	interned map[uint64][]int32
	names    []string // port names by id
	ctx      context.Context
	// anyL34, for an indexed chain's rest rules, leaves addresses and
	// ports out of the bitsets (each is then one all-rules set): they
	// are checked whole anyway, and those fields' distinct values are
	// what makes bitsets cost rules × values.
	anyL34 bool
}

// cancelled reports whether the compilation was abandoned. Each bitset
// costs work linear in the chain's rules, so checking before each one
// bounds how long an abandoned compile runs on.
func (b *builder) cancelled() bool { return b.ctx != nil && b.ctx.Err() != nil }

func (b *builder) intern(words []uint64) int32 {
	if b.cancelled() {
		return 0
	}
	var h maphash.Hash
	h.SetSeed(b.seed)
	var buf [8]byte
	for _, w := range words {
		binary.LittleEndian.PutUint64(buf[:], w)
		h.Write(buf[:])
	}
	k := h.Sum64()
	for _, id := range b.interned[k] {
		if slices.Equal(b.cc.sets[id], words) {
			return id
		}
	}
	id := int32(len(b.cc.sets))
	c := slices.Clone(words)
	b.cc.sets = append(b.cc.sets, c)
	sum := make([]uint64, (len(c)+63)/64)
	for w, x := range c {
		if x != 0 {
			sum[w/64] |= 1 << (w % 64)
		}
	}
	b.cc.summaries = append(b.cc.summaries, sum)
	b.interned[k] = append(b.interned[k], id)
	return id
}

// set builds a bitset of the rules for which match(rule) holds.
func (b *builder) set(rl []rules.Rule, match func(*rules.Rule) bool) int32 {
	if b.cancelled() {
		return 0
	}
	w := make([]uint64, b.cc.words)
	for i := range rl {
		if match(&rl[i]) {
			w[i/64] |= 1 << (i % 64)
		}
	}
	return b.intern(w)
}

// byteTables are a chain's field tables indexed by a byte.
type byteTables struct{ proto, tcpflags, icmptype [256]int32 }

func (b *builder) build(rl []rules.Rule) {
	cc := b.cc
	cc.bt = &byteTables{}
	cc.family[0] = b.set(rl, func(r *rules.Rule) bool { return r.Family != 6 })
	cc.family[1] = b.set(rl, func(r *rules.Rule) bool { return r.Family != 4 })
	protos, types, flagMask := mentioned(rl)
	b.table(cc.bt.proto[:], func(p int) int { return protos.class(p) }, func(p int) int32 {
		return b.set(rl, func(r *rules.Rule) bool { return r.Proto < 0 || (r.Proto == p) != r.ProtoNeg })
	})
	for s := 0; s < 5; s++ {
		bit := uint8(1) << s
		cc.state[s] = b.set(rl, func(r *rules.Rule) bool { return r.States == 0 || (r.States&bit != 0) != r.StateNeg })
	}
	cc.state[5], cc.state[6], cc.state[7] = cc.state[0], cc.state[0], cc.state[0]
	cc.in = make([]int32, len(b.names))
	cc.out = make([]int32, len(b.names))
	for id, name := range b.names {
		cc.in[id] = b.set(rl, func(r *rules.Rule) bool { return r.In == "" || (r.In == name) != r.InNeg })
		cc.out[id] = b.set(rl, func(r *rules.Rule) bool { return r.Out == "" || (r.Out == name) != r.OutNeg })
	}
	b.table(cc.bt.tcpflags[:], func(fl int) int { return fl & int(flagMask) }, func(fl int) int32 {
		return b.set(rl, func(r *rules.Rule) bool {
			return !r.TCPFlags || (uint8(fl)&r.TCPFlagsMask == r.TCPFlagsComp) != r.TCPFlagsNeg
		})
	})
	b.table(cc.bt.icmptype[:], func(t int) int { return types.class(t) }, func(t int) int32 {
		return b.set(rl, func(r *rules.Rule) bool {
			// The code is checked as a residual when the type matches; a
			// negated type+code is decided entirely in the residual.
			return r.ICMPType < 0 || (r.ICMPNeg && r.ICMPCode >= 0) || (r.ICMPType == t) != r.ICMPNeg
		})
	})
	if b.anyL34 {
		all := b.set(rl, func(*rules.Rule) bool { return true })
		cc.src4, cc.dst4, cc.src6, cc.dst6 = rangeIndex{bounds: []u128{{}}, sets: []int32{all}}, rangeIndex{bounds: []u128{{}}, sets: []int32{all}},
			rangeIndex{bounds: []u128{{}}, sets: []int32{all}}, rangeIndex{bounds: []u128{{}}, sets: []int32{all}}
		cc.sport, cc.dport = portIndex{bounds: []uint16{0}, sets: []int32{all}}, portIndex{bounds: []uint16{0}, sets: []int32{all}}
		return
	}
	cc.src4 = b.addrIndex(rl, false, func(r *rules.Rule) ([]netip.Prefix, bool) { return r.Src, r.SrcNeg })
	cc.dst4 = b.addrIndex(rl, false, func(r *rules.Rule) ([]netip.Prefix, bool) { return r.Dst, r.DstNeg })
	cc.src6 = b.addrIndex(rl, true, func(r *rules.Rule) ([]netip.Prefix, bool) { return r.Src, r.SrcNeg })
	cc.dst6 = b.addrIndex(rl, true, func(r *rules.Rule) ([]netip.Prefix, bool) { return r.Dst, r.DstNeg })
	cc.sport = b.portIndex(rl, func(r *rules.Rule) ([]rules.PortRange, bool) { return r.SPorts, r.SPortNeg })
	cc.dport = b.portIndex(rl, func(r *rules.Rule) ([]rules.PortRange, bool) { return r.DPorts, r.DPortNeg })
}

// byteSet is a set of byte values (protocols, ICMP types) some rule names.
type byteSet [4]uint64

func (s *byteSet) add(v int) { s[v>>6] |= 1 << (v & 63) }

// class is v's equivalence class for a field: v itself if a rule names
// it; otherwise 256, the class of every value no rule names (all of them
// match the same rules).
func (s *byteSet) class(v int) int {
	if s[v>>6]&(1<<(v&63)) != 0 {
		return v
	}
	return 256
}

// mentioned returns the protocols and ICMP types the rules name, and the
// union of their --tcp-flags masks (flags outside it match alike).
func mentioned(rl []rules.Rule) (protos, types byteSet, flagMask uint8) {
	for i := range rl {
		r := &rl[i]
		if r.Proto >= 0 {
			protos.add(r.Proto & 255)
		}
		if r.ICMPType >= 0 {
			types.add(r.ICMPType & 255)
		}
		if r.TCPFlags {
			flagMask |= r.TCPFlagsMask
		}
	}
	return protos, types, flagMask
}

// table fills a 256-entry field table, computing one bitset per class of
// values (class(v), 0-256) rather than per value: a chain that names two
// protocols builds three bitsets, not 256.
func (b *builder) table(dst []int32, class func(int) int, set func(int) int32) {
	var done [257]int32
	for i := range done {
		done[i] = -1
	}
	for v := range dst {
		k := class(v)
		if done[k] < 0 {
			done[k] = set(v)
		}
		dst[v] = done[k]
	}
}

// addrIndex builds the interval index of one address field for one family,
// sweeping over the prefixes' boundaries with a coverage count per rule.
func (b *builder) addrIndex(rl []rules.Rule, v6 bool, field func(*rules.Rule) ([]netip.Prefix, bool)) rangeIndex {
	type event struct {
		at    u128
		rule  int
		delta int
	}
	var evs []event
	for i := range rl {
		ps, _ := field(&rl[i])
		for _, p := range ps {
			if p.Addr().Is6() != v6 {
				continue
			}
			lo, hi := prefixRange(p)
			evs = append(evs, event{lo, i, +1})
			if next, ok := inc128(hi); ok {
				evs = append(evs, event{next, i, -1})
			}
		}
	}
	sort.Slice(evs, func(i, j int) bool { return less128(evs[i].at, evs[j].at) })
	cover := make([]int, len(rl))
	words := make([]uint64, b.cc.words)
	eval := func() int32 {
		if b.cancelled() {
			return 0
		}
		for w := range words {
			words[w] = 0
		}
		for i := range rl {
			ps, neg := field(&rl[i])
			in := len(ps) == 0 || (cover[i] > 0) != neg
			if in {
				words[i/64] |= 1 << (i % 64)
			}
		}
		return b.intern(words)
	}
	ri := rangeIndex{bounds: []u128{{}}, sets: []int32{eval()}}
	for k := 0; k < len(evs); {
		at := evs[k].at
		for ; k < len(evs) && evs[k].at == at; k++ {
			cover[evs[k].rule] += evs[k].delta
		}
		id := eval()
		if ri.bounds[len(ri.bounds)-1] == at {
			ri.sets[len(ri.sets)-1] = id
		} else {
			ri.bounds = append(ri.bounds, at)
			ri.sets = append(ri.sets, id)
		}
	}
	return ri
}

func prefixRange(p netip.Prefix) (lo, hi u128) {
	a := p.Addr()
	if a.Is4() {
		v := uint64(binary.BigEndian.Uint32(a.AsSlice()))
		host := uint64(1)<<(32-p.Bits()) - 1
		return u128{0, v}, u128{0, v | host}
	}
	b := a.As16()
	lo = u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	hb := 128 - p.Bits()
	hi = lo
	switch {
	case hb >= 64:
		hi.lo = ^uint64(0)
		if hb > 64 {
			hi.hi |= uint64(1)<<(hb-64) - 1
		}
		if hb == 128 {
			hi.hi = ^uint64(0)
		}
	case hb > 0:
		hi.lo |= uint64(1)<<hb - 1
	}
	return lo, hi
}

func inc128(v u128) (u128, bool) {
	lo, c := bits.Add64(v.lo, 1, 0)
	hi, c2 := bits.Add64(v.hi, 0, c)
	return u128{hi, lo}, c2 == 0
}

func (b *builder) portIndex(rl []rules.Rule, field func(*rules.Rule) ([]rules.PortRange, bool)) portIndex {
	bounds := map[int]bool{0: true}
	for i := range rl {
		ps, _ := field(&rl[i])
		for _, p := range ps {
			bounds[int(p.Lo)] = true
			if p.Hi < 65535 {
				bounds[int(p.Hi)+1] = true
			}
		}
	}
	var sorted []int
	for v := range bounds {
		sorted = append(sorted, v)
	}
	slices.Sort(sorted)
	pi := portIndex{}
	for _, v := range sorted {
		id := b.set(rl, func(r *rules.Rule) bool {
			ps, neg := field(r)
			if len(ps) == 0 {
				return true
			}
			in := false
			for _, p := range ps {
				if uint16(v) >= p.Lo && uint16(v) <= p.Hi {
					in = true
					break
				}
			}
			return in != neg
		})
		pi.bounds = append(pi.bounds, uint16(v))
		pi.sets = append(pi.sets, id)
	}
	return pi
}

// Result is the outcome of classifying one packet.
type Result struct {
	Verdict Verdict
	// Volatile is set when a rate limit took part in the decision: the
	// next packet of the flow may get another one, so it is not cached.
	Volatile bool
	// Rule is the id of the rule that decided (-1: a chain policy decided).
	Rule int32
	// Chain is the chain whose policy decided when Rule is -1.
	Chain int32
	// Logged is the id of the last LOG rule the packet matched (-1: none).
	Logged int32
}

// maxDepth bounds jumps between chains (iptables allows 100 levels as
// XT_TABLE_MAXJUMPS... dpfw rejects loops at compile time; this bounds work).
const maxDepth = 16

// Run classifies p (state: a conntrack state bit) entering at hook, on input
// port in and output port out. It never allocates.
func (f *Filter) Run(ctx Ctx, p *packet.Parsed, state uint8, hook Hook, in, out uint16) Result {
	v6 := 0
	if p.Kind == packet.IPv6 {
		v6 = 1
	}
	if r, ok := f.constant(ctx, v6, hook, state); ok {
		return r
	}
	return f.runChain(ctx, f.hooks[v6][hook], p, state, in, out, 0)
}

func (f *Filter) runChain(ctx Ctx, ci int32, p *packet.Parsed, state uint8, in, out uint16, depth int) Result {
	cc := &f.chains[ci]
	res := Result{Verdict: cc.policy, Rule: -1, Chain: ci, Logged: -1}
	switch {
	case cc.n == 0 || depth >= maxDepth:
	case cc.linear != nil:
		if f.runLinear(ctx, ci, p, state, in, out, depth, &res) {
			return res
		}
	case cc.index != nil:
		if f.runIndexed(ctx, ci, p, state, in, out, depth, &res) {
			return res
		}
	default:
		if f.runBitsets(ctx, ci, p, state, in, out, depth, &res) {
			return res
		}
	}
	if !cc.builtin {
		res.Verdict = verdictContinue
	} else {
		ctx.Path.add(PolicyStep(ci))
	}
	return res
}

// runIndexed walks the rules of indexed chain ci that match, in order,
// applying each (act) until one decides; it reports whether one did.
func (f *Filter) runIndexed(ctx Ctx, ci int32, p *packet.Parsed, state uint8, in, out uint16, depth int, res *Result) bool {
	ix := f.chains[ci].index
	var cur indexCursor
	ix.start(&cur, p, state, in, out, f.sets)
	for ri := ix.next(&cur, -1); ri >= 0; ri = ix.next(&cur, ri) {
		if f.act(ctx, ci, int(ri), p, state, in, out, depth, res) {
			return true
		}
	}
	return false
}

// runBitsets walks the rules of chain ci whose bitsets all hold, in order,
// applying each until one decides; it reports whether one did. Its arrays
// of slices are zeroed on every call, so it is apart from runChain, which
// the other classifiers take without them.
func (f *Filter) runBitsets(ctx Ctx, ci int32, p *packet.Parsed, state uint8, in, out uint16, depth int, res *Result) bool {
	cc := &f.chains[ci]
	var ids [11]int32
	ids[0], ids[1], ids[2] = cc.fields(p, state, in, out, ids[3:])
	sets := [11][]uint64{}
	sums := [11][]uint64{}
	for k, id := range ids {
		sets[k], sums[k] = cc.sets[id], cc.summaries[id]
	}
	for sw := 0; sw < len(sums[0]); sw++ {
		s := sums[0][sw]
		for k := 1; k < len(sums) && s != 0; k++ {
			s &= sums[k][sw]
		}
		for s != 0 {
			w := sw*64 + bits.TrailingZeros64(s)
			s &= s - 1
			c := sets[0][w]
			for k := 1; k < len(sets) && c != 0; k++ {
				c &= sets[k][w]
			}
			for c != 0 {
				ri := w*64 + bits.TrailingZeros64(c)
				c &= c - 1
				if (cc.hasSets || cc.icmpCode[ri] >= 0) && !cc.residual(ri, f, p) {
					continue
				}
				if cc.terminal(ctx, ri, res) || f.act(ctx, ci, ri, p, state, in, out, depth, res) {
					return true
				}
			}
		}
	}
	return false
}

// runLinear checks each rule of a short chain in turn, applying those
// that match (act) until one decides; it reports whether one did.
func (f *Filter) runLinear(ctx Ctx, ci int32, p *packet.Parsed, state uint8, in, out uint16, depth int, res *Result) bool {
	cc := &f.chains[ci]
	pr := probe{p: p, state: state, in: in, out: out, sets: f.sets}
	for ri := range cc.n {
		if !cc.linear.match(int32(ri), &pr) {
			continue
		}
		if cc.terminal(ctx, ri, res) || f.act(ctx, ci, ri, p, state, in, out, depth, res) {
			return true
		}
	}
	return false
}

// LinearUpTo is the chain length up to which IndexAuto checks each rule in
// turn rather than building bitsets.
const LinearUpTo = 8

// terminal applies rule ri's target when it is a verdict and the rule has
// no rate limit (the common case, inlined: act is a call), and reports
// whether it was.
func (cc *cchain) terminal(ctx Ctx, ri int, res *Result) bool {
	a := cc.action[ri].kind
	if a > actReject || cc.hasLimits && cc.limit[ri] >= 0 {
		return false
	}
	rid := int32(cc.first + ri)
	ctx.Path.add(rid)
	res.Verdict, res.Rule, res.Chain = actVerdicts[a], rid, 0
	return true
}

// actVerdicts are the verdicts of the terminal actions.
var actVerdicts = [...]Verdict{actAccept: Accept, actDrop: Drop, actReject: Reject}

// act applies rule ri of chain ci, whose matches held: its rate limit, then
// its target. It reports whether that decided the chain, with the outcome
// in res; otherwise (LOG, a limit over its rate, a jump that came back)
// the chain goes on, and res keeps what the rule left (Logged, Volatile).
func (f *Filter) act(ctx Ctx, ci int32, ri int, p *packet.Parsed, state uint8, in, out uint16, depth int, res *Result) bool {
	cc := &f.chains[ci]
	if cc.hasLimits && cc.limit[ri] >= 0 {
		li := cc.limit[ri]
		// The outcome depends on time and on other packets: never cache it.
		res.Volatile = true
		if ctx.State.limiters[li].conform(p, ctx.Now) == f.limits[li].Above {
			return false
		}
	}
	rid := int32(cc.first + ri)
	ctx.Path.add(rid)
	switch a := cc.action[ri]; a.kind {
	case actAccept, actDrop, actReject:
		*res = Result{Verdict: actVerdicts[a.kind], Rule: rid, Logged: res.Logged, Volatile: res.Volatile}
		return true
	case actLog:
		res.Logged = rid
	case actReturn:
		if cc.builtin {
			ctx.Path.add(PolicyStep(ci))
			res.Rule = -1
			return true
		}
		*res = Result{Verdict: verdictContinue, Rule: rid, Logged: res.Logged, Volatile: res.Volatile}
		return true
	case actJump:
		sub := f.runChain(ctx, a.chain, p, state, in, out, depth+1)
		if sub.Logged >= 0 {
			res.Logged = sub.Logged
		}
		res.Volatile = res.Volatile || sub.Volatile
		if sub.Verdict != verdictContinue {
			sub.Logged, sub.Volatile = res.Logged, res.Volatile
			*res = sub
			return true
		}
	}
	return false
}

// verdictContinue is an internal sentinel: a user chain ended (or RETURNed)
// without a verdict, and its caller continues.
const verdictContinue Verdict = 0xff

// fields returns the bitset ids of the packet's field values.
func (cc *cchain) fields(p *packet.Parsed, state uint8, in, out uint16, rest []int32) (int32, int32, int32) {
	v6 := p.Kind == packet.IPv6
	fam := cc.family[0]
	src, dst := &cc.src4, &cc.dst4
	if v6 {
		fam = cc.family[1]
		src, dst = &cc.src6, &cc.dst6
	}
	rest[0] = src.lookup(addrKey(p.Src, v6))
	rest[1] = dst.lookup(addrKey(p.Dst, v6))
	sp, dp := p.SrcPort, p.DstPort
	if p.Proto != 6 && p.Proto != 17 && p.Proto != 132 {
		sp, dp = 0, 0
	}
	rest[2] = cc.sport.lookup(sp)
	rest[3] = cc.dport.lookup(dp)
	rest[4] = cc.in[min(int(in), len(cc.in)-1)]
	rest[5] = cc.out[min(int(out), len(cc.out)-1)]
	rest[6] = cc.bt.tcpflags[p.TCPFlags]
	rest[7] = cc.bt.icmptype[p.ICMPType]
	return fam, cc.bt.proto[p.Proto], cc.state[bits.TrailingZeros8(state)&7]
}

// residual checks what the bitsets do not decide: the ICMP code, and
// the sets.
func (cc *cchain) residual(ri int, f *Filter, p *packet.Parsed) bool {
	if cc.hasSets && !cc.inSets(ri, f, p) {
		return false
	}
	code := cc.icmpCode[ri]
	if code < 0 {
		return true
	}
	r := &f.Rules[cc.first+ri]
	match := int(p.ICMPType) == r.ICMPType && int(p.ICMPCode) == int(code)
	return match != r.ICMPNeg
}

// inSets checks rule ri's -m set matches.
func (cc *cchain) inSets(ri int, f *Filter, p *packet.Parsed) bool {
	v6 := p.Kind == packet.IPv6
	if s := cc.srcSet[ri]; s >= 0 && f.sets[s].Contains(&p.Src, v6) == f.Rules[cc.first+ri].SrcSetNeg {
		return false
	}
	s := cc.dstSet[ri]
	return s < 0 || f.sets[s].Contains(&p.Dst, v6) != f.Rules[cc.first+ri].DstSetNeg
}
