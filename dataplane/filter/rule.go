package filter

import (
	"fmt"
	"net/netip"
	"strings"
)

// Pos is where a rule came from.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.File == "":
		return fmt.Sprintf("line %d", p.Line)
	case p.Col > 0:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// PortRange is an inclusive port range.
type PortRange struct{ Lo, Hi uint16 }

// Family restricts a rule to IPv4 or IPv6 (0: both).
type Family uint8

// State bits a rule matches (conntrack.State.Mask values).
const (
	StateInvalid     = 1 << 0
	StateNew         = 1 << 1
	StateEstablished = 1 << 2
	StateRelated     = 1 << 3
	StateUntracked   = 1 << 4
)

var stateBits = map[string]uint8{
	"INVALID": StateInvalid, "NEW": StateNew, "ESTABLISHED": StateEstablished,
	"RELATED": StateRelated, "UNTRACKED": StateUntracked,
}

// StateNames formats a state mask like iptables (NEW,ESTABLISHED).
func StateNames(m uint8) string {
	var out []string
	for _, n := range []string{"INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED"} {
		if m&stateBits[n] != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

// Rule is one parsed rule, before compilation. The zero value of a match
// field means "any".
type Rule struct {
	Pos    Pos
	Chain  string
	Family Family // 4, 6, or 0 for both

	Proto    int // -1: any
	ProtoNeg bool

	Src, Dst       []netip.Prefix
	SrcNeg, DstNeg bool
	// SrcSet, DstSet name the sets Src/Dst were expanded from (-m set).
	SrcSet, DstSet string

	SPorts, DPorts     []PortRange
	SPortNeg, DPortNeg bool

	In, Out       string
	InNeg, OutNeg bool

	States   uint8 // 0: any
	StateNeg bool

	ICMPType, ICMPCode int // -1: any
	ICMPNeg            bool

	TCPFlagsMask, TCPFlagsComp uint8
	TCPFlags                   bool // a --tcp-flags / --syn match is present
	TCPFlagsNeg                bool

	// Limit is a -m limit or -m hashlimit match (nil: none).
	Limit *RateLimit

	Comment string

	// Target is ACCEPT, DROP, REJECT, LOG, RETURN or a user chain.
	Target     string
	RejectWith string
	LogPrefix  string
}

// Chain is a chain with its rules in order.
type Chain struct {
	Name string
	// Policy is ACCEPT or DROP for built-in chains, "" for user chains.
	Policy string
	Rules  []Rule
	Pos    Pos
}

// Ruleset is a parsed rule set: built-in chains INPUT, FORWARD, OUTPUT and
// any user chains.
type Ruleset struct {
	Chains map[string]*Chain
	// Order lists chain names in the order they were declared.
	Order []string
	// Sets are the named address sets rules may match with -m set
	// --match-set NAME src|dst (given to the parser, like ipset's).
	Sets map[string][]netip.Prefix

	// nrules counts the rules the parser added (for its limit check,
	// which must not walk every chain on every line).
	nrules int
}

// BuiltinChains are the chains every rule set has.
var BuiltinChains = []string{"INPUT", "FORWARD", "OUTPUT"}

// NewRuleset returns an empty rule set whose built-in chains accept.
func NewRuleset() *Ruleset {
	rs := &Ruleset{Chains: map[string]*Chain{}}
	for _, c := range BuiltinChains {
		rs.Chains[c] = &Chain{Name: c, Policy: "ACCEPT"}
		rs.Order = append(rs.Order, c)
	}
	return rs
}

// IsBuiltin reports whether name is a built-in chain.
func IsBuiltin(name string) bool {
	for _, c := range BuiltinChains {
		if c == name {
			return true
		}
	}
	return false
}

// NumRules counts the rules in every chain.
func (rs *Ruleset) NumRules() int {
	n := 0
	for _, c := range rs.Chains {
		n += len(c.Rules)
	}
	return n
}

// String formats a rule in iptables syntax (-A CHAIN …), as iptables-save would.
func (r *Rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-A %s", r.Chain)
	neg := func(n bool) string {
		if n {
			return " !"
		}
		return ""
	}
	if r.Proto >= 0 {
		fmt.Fprintf(&b, "%s -p %s", neg(r.ProtoNeg), protoName(r.Proto))
	}
	switch {
	case r.SrcSet != "":
		fmt.Fprintf(&b, " -m set%s --match-set %s src", neg(r.SrcNeg), r.SrcSet)
	case len(r.Src) > 0:
		fmt.Fprintf(&b, "%s -s %s", neg(r.SrcNeg), joinPrefixes(r.Src))
	}
	switch {
	case r.DstSet != "":
		fmt.Fprintf(&b, " -m set%s --match-set %s dst", neg(r.DstNeg), r.DstSet)
	case len(r.Dst) > 0:
		fmt.Fprintf(&b, "%s -d %s", neg(r.DstNeg), joinPrefixes(r.Dst))
	}
	if r.In != "" {
		fmt.Fprintf(&b, "%s -i %s", neg(r.InNeg), r.In)
	}
	if r.Out != "" {
		fmt.Fprintf(&b, "%s -o %s", neg(r.OutNeg), r.Out)
	}
	writePorts := func(opt, multi string, ps []PortRange, n bool) {
		if len(ps) == 0 {
			return
		}
		if len(ps) == 1 {
			fmt.Fprintf(&b, "%s %s %s", neg(n), opt, portString(ps[0]))
			return
		}
		var s []string
		for _, p := range ps {
			s = append(s, portString(p))
		}
		fmt.Fprintf(&b, " -m multiport%s %s %s", neg(n), multi, strings.Join(s, ","))
	}
	writePorts("--sport", "--sports", r.SPorts, r.SPortNeg)
	writePorts("--dport", "--dports", r.DPorts, r.DPortNeg)
	if r.ICMPType >= 0 {
		opt := "--icmp-type"
		if r.Proto == 58 {
			opt = "--icmpv6-type"
		}
		t := fmt.Sprint(r.ICMPType)
		if r.ICMPCode >= 0 {
			t += fmt.Sprintf("/%d", r.ICMPCode)
		}
		fmt.Fprintf(&b, "%s %s %s", neg(r.ICMPNeg), opt, t)
	}
	if r.TCPFlags {
		fmt.Fprintf(&b, "%s --tcp-flags %s %s", neg(r.TCPFlagsNeg), flagNames(r.TCPFlagsMask), flagNames(r.TCPFlagsComp))
	}
	if r.States != 0 {
		fmt.Fprintf(&b, " -m conntrack%s --ctstate %s", neg(r.StateNeg), StateNames(r.States))
	}
	if r.Limit != nil {
		b.WriteString(" " + r.Limit.String())
	}
	if r.Comment != "" {
		fmt.Fprintf(&b, " -m comment --comment %q", r.Comment)
	}
	fmt.Fprintf(&b, " -j %s", r.Target)
	if r.RejectWith != "" {
		fmt.Fprintf(&b, " --reject-with %s", r.RejectWith)
	}
	if r.LogPrefix != "" {
		fmt.Fprintf(&b, " --log-prefix %q", r.LogPrefix)
	}
	return b.String()
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func portString(p PortRange) string {
	if p.Lo == p.Hi {
		return fmt.Sprint(p.Lo)
	}
	return fmt.Sprintf("%d:%d", p.Lo, p.Hi)
}

var protoNames = map[string]int{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "gre": 47, "esp": 50, "ah": 51, "all": -1}

func protoName(p int) string {
	for n, v := range protoNames {
		if v == p && n != "ipv6-icmp" {
			return n
		}
	}
	return fmt.Sprint(p)
}

var tcpFlagBits = []struct {
	name string
	bit  uint8
}{{"SYN", 0x02}, {"ACK", 0x10}, {"FIN", 0x01}, {"RST", 0x04}, {"URG", 0x20}, {"PSH", 0x08}, {"ECE", 0x40}, {"CWR", 0x80}}

func flagNames(m uint8) string {
	if m == 0 {
		return "NONE"
	}
	if m == 0xff {
		return "ALL"
	}
	var out []string
	for _, f := range tcpFlagBits {
		if m&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ",")
}

// ProtoName names a protocol number as iptables prints it.
func ProtoName(p int) string { return protoName(p) }

// FlagNames formats a TCP flag mask as iptables does (SYN,ACK; ALL; NONE).
func FlagNames(m uint8) string { return flagNames(m) }
