package filter_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
	"github.com/dpfw/dpfw/perf/rulegen"
)

// refRun is a deliberately slow classifier written straight from iptables'
// semantics: walk the chain, test every match of every rule, follow jumps.
func refRun(rs *rules.Ruleset, names []string, p *packet.Parsed, state uint8, hook filter.Hook, in, out uint16) (filter.Verdict, string) {
	chain := [...]string{"FORWARD", "INPUT", "OUTPUT"}[hook]
	v, rule, done := refChain(rs, names, chain, p, state, in, out, 0)
	if !done {
		if rs.Chains[chain].Policy == "DROP" {
			return filter.Drop, "policy"
		}
		return filter.Accept, "policy"
	}
	return v, rule
}

func refChain(rs *rules.Ruleset, names []string, chain string, p *packet.Parsed, state uint8, in, out uint16, depth int) (filter.Verdict, string, bool) {
	for i := range rs.Chains[chain].Rules {
		r := &rs.Chains[chain].Rules[i]
		if !refMatch(r, rs.Sets, names, p, state, in, out) {
			continue
		}
		id := fmt.Sprintf("%s#%d", chain, i)
		switch r.Target {
		case "ACCEPT":
			return filter.Accept, id, true
		case "DROP":
			return filter.Drop, id, true
		case "REJECT":
			return filter.Reject, id, true
		case "LOG":
			continue
		case "RETURN":
			return 0, "", false
		default:
			if v, rid, done := refChain(rs, names, r.Target, p, state, in, out, depth+1); done {
				return v, rid, true
			}
		}
	}
	return 0, "", false
}

func refMatch(r *rules.Rule, sets map[string][]netip.Prefix, names []string, p *packet.Parsed, state uint8, in, out uint16) bool {
	v6 := p.Kind == packet.IPv6
	if (r.Family == 4 && v6) || (r.Family == 6 && !v6) {
		return false
	}
	if r.Proto >= 0 && (int(p.Proto) == r.Proto) == r.ProtoNeg {
		return false
	}
	addr := func(a [16]byte) netip.Addr {
		if v6 {
			return netip.AddrFrom16(a)
		}
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	inPrefixes := func(ps []netip.Prefix, a netip.Addr) bool {
		for _, pf := range ps {
			if pf.Contains(a) {
				return true
			}
		}
		return false
	}
	if len(r.Src) > 0 && inPrefixes(r.Src, addr(p.Src)) == r.SrcNeg {
		return false
	}
	if len(r.Dst) > 0 && inPrefixes(r.Dst, addr(p.Dst)) == r.DstNeg {
		return false
	}
	if r.SrcSet != "" && inPrefixes(sets[r.SrcSet], addr(p.Src)) == r.SrcSetNeg {
		return false
	}
	if r.DstSet != "" && inPrefixes(sets[r.DstSet], addr(p.Dst)) == r.DstSetNeg {
		return false
	}
	sp, dp := p.SrcPort, p.DstPort
	if p.Proto != 6 && p.Proto != 17 && p.Proto != 132 {
		sp, dp = 0, 0
	}
	inRanges := func(ps []rules.PortRange, v uint16) bool {
		for _, pr := range ps {
			if v >= pr.Lo && v <= pr.Hi {
				return true
			}
		}
		return false
	}
	if len(r.SPorts) > 0 && inRanges(r.SPorts, sp) == r.SPortNeg {
		return false
	}
	if len(r.DPorts) > 0 && inRanges(r.DPorts, dp) == r.DPortNeg {
		return false
	}
	name := func(id uint16) string {
		if int(id) < len(names) {
			return names[id]
		}
		return ""
	}
	if r.In != "" && (name(in) == r.In) == r.InNeg {
		return false
	}
	if r.Out != "" && (name(out) == r.Out) == r.OutNeg {
		return false
	}
	if r.States != 0 && (r.States&state != 0) == r.StateNeg {
		return false
	}
	if r.ICMPType >= 0 {
		m := int(p.ICMPType) == r.ICMPType && (r.ICMPCode < 0 || int(p.ICMPCode) == r.ICMPCode)
		if m == r.ICMPNeg {
			return false
		}
	}
	if r.TCPFlags && (p.TCPFlags&r.TCPFlagsMask == r.TCPFlagsComp) == r.TCPFlagsNeg {
		return false
	}
	return true
}

// randomRuleset writes a random rule set in iptables syntax, so the parser
// is exercised too.
func randomRuleset(r *rand.Rand, nrules int) string {
	var b strings.Builder
	nuser := r.IntN(3)
	for u := 0; u < nuser; u++ {
		fmt.Fprintf(&b, "-N u%d\n", u)
	}
	for _, c := range []string{"INPUT", "FORWARD", "OUTPUT"} {
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "-P %s DROP\n", c)
		}
	}
	neg := func() string {
		if r.IntN(5) == 0 {
			return "! "
		}
		return ""
	}
	addr := func() string {
		if r.IntN(2) == 0 {
			return fmt.Sprintf("198.18.%d.%d/%d", r.IntN(4), r.IntN(256), 22+r.IntN(11))
		}
		return fmt.Sprintf("198.18.%d.%d", r.IntN(4), r.IntN(256))
	}
	for i := 0; i < nrules; i++ {
		chain := []string{"INPUT", "FORWARD", "OUTPUT"}[r.IntN(3)]
		if nuser > 0 && r.IntN(4) == 0 {
			chain = fmt.Sprintf("u%d", r.IntN(nuser))
		}
		fmt.Fprintf(&b, "-A %s", chain)
		proto := []string{"", "tcp", "udp", "icmp"}[r.IntN(4)]
		pneg := neg()
		if proto != "" {
			fmt.Fprintf(&b, " %s-p %s", pneg, proto)
		}
		if pneg != "" {
			proto = "" // iptables refuses protocol options after ! -p
		}
		sneg := ""
		if r.IntN(3) == 0 {
			sneg = neg()
			fmt.Fprintf(&b, " %s-s %s", sneg, addr())
		}
		if r.IntN(3) == 0 {
			if n := neg(); n != "" || sneg != "" {
				fmt.Fprintf(&b, " %s-d %s", n, addr()) // iptables: no ! with several addresses
			} else {
				fmt.Fprintf(&b, " -d %s,%s", addr(), addr())
			}
		}
		if r.IntN(6) == 0 {
			fmt.Fprintf(&b, " -m set %s--match-set s%d %s", neg(), r.IntN(2), []string{"src", "dst"}[r.IntN(2)])
		}
		if r.IntN(4) == 0 {
			iface := "-i"
			if chain == "OUTPUT" {
				iface = "-o" // iptables: no -i in OUTPUT
			}
			fmt.Fprintf(&b, " %s%s %s", neg(), iface, []string{"a", "b"}[r.IntN(2)])
		}
		if proto == "tcp" || proto == "udp" {
			if neg := neg(); neg == "" {
				switch r.IntN(4) {
				case 0:
					fmt.Fprintf(&b, " --dport %d", r.IntN(30))
				case 1:
					lo := r.IntN(30)
					fmt.Fprintf(&b, " --sport %d:%d", lo, lo+r.IntN(10))
				case 2:
					fmt.Fprintf(&b, " -m multiport --dports %d,%d:%d", r.IntN(30), 10, 10+r.IntN(20))
				}
			} else if r.IntN(2) == 0 {
				fmt.Fprintf(&b, " ! --dport %d", r.IntN(30))
			}
		}
		if proto == "tcp" && r.IntN(4) == 0 {
			fmt.Fprintf(&b, " %s--tcp-flags SYN,ACK SYN", neg())
		}
		if proto == "icmp" && r.IntN(2) == 0 {
			fmt.Fprintf(&b, " %s--icmp-type %s", neg(), []string{"echo-request", "3/3", "destination-unreachable", "0"}[r.IntN(4)])
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, " -m conntrack %s--ctstate %s", neg(), []string{"NEW", "ESTABLISHED,RELATED", "INVALID", "NEW,ESTABLISHED"}[r.IntN(4)])
		}
		targets := []string{"ACCEPT", "DROP", "REJECT", "LOG", "RETURN"}
		t := targets[r.IntN(len(targets))]
		if nuser > 0 && !strings.HasPrefix(chain, "u") && r.IntN(4) == 0 {
			t = fmt.Sprintf("u%d", r.IntN(nuser))
		}
		fmt.Fprintf(&b, " -j %s\n", t)
	}
	return b.String()
}

// randomSets are the sets s0 and s1 of random prefixes near the random
// rule sets' addresses.
func randomSets(r *rand.Rand) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, name := range []string{"s0", "s1"} {
		var ps []netip.Prefix
		for range 1 + r.IntN(30) {
			a := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))})
			ps = append(ps, netip.PrefixFrom(a, 22+r.IntN(11)).Masked())
		}
		out[name] = ps
	}
	return out
}

func randomPacket(r *rand.Rand) (*packet.Parsed, uint8) {
	p := &packet.Parsed{Kind: packet.IPv4}
	p.Proto = []uint8{6, 17, 1, 47}[r.IntN(4)]
	p.Src = [16]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))}
	p.Dst = [16]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))}
	p.SrcPort, p.DstPort = uint16(r.IntN(40)), uint16(r.IntN(40))
	p.TCPFlags = uint8(r.IntN(256))
	p.ICMPType, p.ICMPCode = uint8([]int{0, 3, 8, 11}[r.IntN(4)]), uint8(r.IntN(4))
	return p, uint8(1) << r.IntN(4)
}

// TestDifferential compares the compiled classifier with refRun on random
// rule sets and random packets, with a fixed seed, with each chain
// classified by bitsets and then by the index.
func TestDifferential(t *testing.T) {
	for _, mode := range []struct {
		name string
		m    filter.IndexMode
	}{{"bitsets", filter.IndexNever}, {"indexed", filter.IndexAlways}, {"auto", filter.IndexAuto}} {
		t.Run(mode.name, func(t *testing.T) { differential(t, mode.m) })
	}
}

func differential(t *testing.T, mode filter.IndexMode) {
	sets, packets := 300, 4000
	if testing.Short() {
		sets = 50
	}
	r := rand.New(rand.NewPCG(2026, 11))
	names := []string{"a", "b"}
	env := filter.Env{Ports: map[string]uint16{"a": 0, "b": 1}, Index: mode}
	cases := 0
	for s := 0; s < sets; s++ {
		text := randomRuleset(r, 1+r.IntN(200))
		rs, err := rules.ParseIptablesSets("random", text, randomSets(r))
		if err != nil {
			t.Fatalf("random rule set did not parse: %v\n%s", err, text)
		}
		f, err := filter.Compile(rs, env, 1)
		if err != nil {
			t.Fatal(err)
		}
		if mode == filter.IndexAlways && f.Stats.Indexed != nonEmptyChains(rs) {
			t.Fatalf("%d chains indexed; want all %d with rules", f.Stats.Indexed, nonEmptyChains(rs))
		}
		for i := 0; i < packets; i++ {
			p, st := randomPacket(r)
			hook := filter.Hook(r.IntN(3))
			in, out := uint16(r.IntN(3)), uint16(r.IntN(2))
			if in == 2 {
				in = filter.NoPort
			}
			got := f.Run(filter.Ctx{}, p, st, hook, in, out)
			want, wantRule := refRun(rs, names, p, st, hook, in, out)
			gotRule := "policy"
			if got.Rule >= 0 {
				ch := f.Rules[got.Rule].Chain
				idx := int(got.Rule) - firstRule(f, ch)
				gotRule = fmt.Sprintf("%s#%d", ch, idx)
			}
			if got.Verdict != want || gotRule != wantRule {
				t.Fatalf("rule set:\n%s\npacket %v state %b hook %d in %d out %d:\ncompiled %v by %s; reference %v by %s",
					text, p, st, hook, in, out, got.Verdict, gotRule, want, wantRule)
			}
			cases++
		}
	}
	t.Logf("%d cases agree", cases)
}

func nonEmptyChains(rs *rules.Ruleset) int {
	n := 0
	for _, c := range rs.Chains {
		if len(c.Rules) > 0 {
			n++
		}
	}
	return n
}

func firstRule(f *filter.Filter, chain string) int {
	for i, r := range f.Rules {
		if r.Chain == chain {
			return i
		}
	}
	return -1
}

func TestRunNoAllocs(t *testing.T) {
	rs, err := rules.ParseIptables("fixed", pcapgen.TutorialFixed)
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{"a": 0}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, st := randomPacket(rand.New(rand.NewPCG(1, 1)))
	if n := testing.AllocsPerRun(1000, func() { f.Run(filter.Ctx{}, p, st, filter.HookInput, 0, 1) }); n != 0 {
		t.Errorf("Run allocates %v times; want 0", n)
	}
}

// BenchmarkClassify classifies a NEW packet that matches no rule (the worst
// case: every candidate is examined) and one that matches the last rule,
// with 10, 10,000 and 100,000 rules of distinct sources and ports, like a
// large allow-list (rulegen.Flat), and compiles the rule set.
func BenchmarkClassify(b *testing.B) {
	for _, n := range []int{10, 10_000, 100_000} {
		rs, err := rules.ParseIptables("bench", rulegen.Flat(n))
		if err != nil {
			b.Fatal(err)
		}
		f, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{"a": 0}}, 1)
		if err != nil {
			b.Fatal(err)
		}
		p := &packet.Parsed{Kind: packet.IPv4, Proto: 6, Src: [16]byte{198, 18, 0, 0}, Dst: [16]byte{198, 18, 1, 1}, SrcPort: 40000, DstPort: 22, TCPFlags: 2}
		b.Run(fmt.Sprintf("rule_miss_%d_rules", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res := f.Run(filter.Ctx{}, p, rules.StateNew, filter.HookInput, 0, 0); res.Verdict != filter.Drop {
					b.Fatal(res)
				}
			}
		})
		hit := *p
		a := netip.MustParseAddr(rulegen.FlatSource(n - 1)).As4()
		copy(hit.Src[:], a[:])
		hit.DstPort = uint16(rulegen.FlatPort(n - 1))
		b.Run(fmt.Sprintf("rule_hit_last_of_%d_rules", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res := f.Run(filter.Ctx{}, &hit, rules.StateNew, filter.HookInput, 0, 0); res.Verdict != filter.Accept {
					b.Fatal(res)
				}
			}
		})
		b.Run(fmt.Sprintf("compile_%d_rules", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{"a": 0}}, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(f.Stats.Bytes)/1e6, "MB")
		})
	}
}

// TestDifferentialLarge compares the compiled classifier with refRun on
// generated rule sets of 50,000 rules (fixed seeds): a flat allow-list,
// whose one long chain is indexed, and a multi-tenant edge with a long
// blocklist chain and many short tenant chains. Packets are drawn near the
// rules (inside their prefixes and port ranges, through the chain's jump)
// so that most of them match something.
func TestDifferentialLarge(t *testing.T) {
	n, packets := 50_000, 3000
	if testing.Short() {
		n, packets = 5_000, 1000
	}
	for _, tc := range []struct {
		name, text string
		hook       filter.Hook
	}{
		{"flat", rulegen.Flat(n), filter.HookInput}, {"tenants", rulegen.Tenants(n, 2026), filter.HookForward},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := rules.ParseIptables(tc.name, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			f, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{}}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if f.Stats.Indexed == 0 {
				t.Fatal("no chain indexed")
			}
			r := rand.New(rand.NewPCG(15, uint64(len(tc.name))))
			near := nearPackets(rs)
			matched, policy := 0, 0
			for i := 0; i < packets; i++ {
				p, st := near(r)
				got := f.Run(filter.Ctx{}, p, st, tc.hook, filter.NoPort, filter.NoPort)
				want, wantRule := refRun(rs, nil, p, st, tc.hook, filter.NoPort, filter.NoPort)
				gotRule := "policy"
				if got.Rule >= 0 {
					gotRule = fmt.Sprintf("%s#%d", f.Rules[got.Rule].Chain, int(got.Rule)-firstRule(f, f.Rules[got.Rule].Chain))
					matched++
				} else {
					policy++
				}
				if got.Verdict != want || gotRule != wantRule {
					t.Fatalf("packet %v state %b: compiled %v by %s; reference %v by %s", p, st, got.Verdict, gotRule, want, wantRule)
				}
			}
			t.Logf("%d packets agree: %d decided by a rule, %d by the policy", packets, matched, policy)
			if matched < packets/4 {
				t.Errorf("only %d of %d packets matched a rule: the packets miss the rule set", matched, packets)
			}
		})
	}
}

// nearPackets returns a generator of packets near rs's rules: it picks a
// rule, and draws the packet's fields inside the rule's matches (or the
// jump that leads to its chain) most of the time, at random otherwise.
func nearPackets(rs *rules.Ruleset) func(*rand.Rand) (*packet.Parsed, uint8) {
	var all []*rules.Rule
	via := map[string]*rules.Rule{} // chain → a rule jumping to it
	for _, name := range rs.Order {
		for i := range rs.Chains[name].Rules {
			r := &rs.Chains[name].Rules[i]
			all = append(all, r)
			if _, user := rs.Chains[r.Target]; user {
				via[r.Target] = r
			}
		}
	}
	inside := func(r *rand.Rand, ps []netip.Prefix) [16]byte {
		var a [16]byte
		if len(ps) == 0 || r.IntN(8) == 0 {
			return [16]byte{198, 18 + byte(r.IntN(2)), byte(r.IntN(256)), byte(r.IntN(256))}
		}
		p := ps[r.IntN(len(ps))]
		b := p.Addr().As4()
		host := uint32(1)<<(32-p.Bits()) - 1
		v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | r.Uint32()&host
		a[0], a[1], a[2], a[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return a
	}
	port := func(r *rand.Rand, ps []rules.PortRange) uint16 {
		if len(ps) == 0 || r.IntN(8) == 0 {
			return uint16(1 + r.IntN(1100))
		}
		pr := ps[r.IntN(len(ps))]
		return pr.Lo + uint16(r.IntN(int(pr.Hi-pr.Lo)+1))
	}
	return func(r *rand.Rand) (*packet.Parsed, uint8) {
		rl := all[r.IntN(len(all))]
		dst := rl.Dst
		if j := via[rl.Chain]; j != nil && len(dst) == 0 {
			dst = j.Dst
		}
		p := &packet.Parsed{Kind: packet.IPv4, Src: inside(r, rl.Src), Dst: inside(r, dst)}
		p.Proto = []uint8{6, 17, 1}[r.IntN(3)]
		if rl.Proto >= 0 && r.IntN(8) != 0 {
			p.Proto = uint8(rl.Proto)
		}
		p.SrcPort, p.DstPort = port(r, rl.SPorts), port(r, rl.DPorts)
		p.TCPFlags = []uint8{2, 0x12, 0x10, 0x11}[r.IntN(4)]
		p.ICMPType, p.ICMPCode = uint8([]int{0, 3, 8, 11}[r.IntN(4)]), uint8(r.IntN(5))
		st := uint8(rules.StateNew)
		if r.IntN(4) == 0 {
			st = uint8(1) << r.IntN(4)
		}
		return p, st
	}
}

// FuzzIndexed: on any rule set the parser accepts, the indexed classifier
// and the automatic choice (linear for short chains) decide every packet as
// the bitset classifier does.
func FuzzIndexed(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		f.Add(randomRuleset(r, 1+r.IntN(30)), r.Uint64())
	}
	f.Fuzz(func(t *testing.T, text string, seed uint64) {
		sets := randomSets(rand.New(rand.NewPCG(seed, 0)))
		rs, err := rules.ParseIptablesSets("fuzz", text, sets)
		if err != nil {
			return
		}
		env := filter.Env{Ports: map[string]uint16{"a": 0, "b": 1}}
		bits, err1 := filter.Compile(rs, env, 1)
		env.Index = filter.IndexNever
		bits, err1 = filter.Compile(rs, env, 1)
		env.Index = filter.IndexAlways
		ix, err2 := filter.Compile(rs, env, 1)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("bitsets: %v; indexed: %v", err1, err2)
		}
		env.Index = filter.IndexAuto
		auto, err3 := filter.Compile(rs, env, 1)
		if (err1 == nil) != (err3 == nil) {
			t.Fatalf("bitsets: %v; auto: %v", err1, err3)
		}
		if err1 != nil {
			return
		}
		pr := rand.New(rand.NewPCG(seed, 1))
		for range 200 {
			p, st := randomPacket(pr)
			hook := filter.Hook(pr.IntN(3))
			in, out := uint16(pr.IntN(2)), uint16(pr.IntN(2))
			a := bits.Run(filter.Ctx{}, p, st, hook, in, out)
			b := ix.Run(filter.Ctx{}, p, st, hook, in, out)
			c := auto.Run(filter.Ctx{}, p, st, hook, in, out)
			if a.Verdict != b.Verdict || a.Rule != b.Rule || a.Chain != b.Chain || c != a {
				t.Fatalf("%v state %b hook %d: bitsets %+v, indexed %+v, auto %+v\n%s", p, st, hook, a, b, c, text)
			}
		}
	})
}
