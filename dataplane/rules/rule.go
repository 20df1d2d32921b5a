package rules

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
	// SrcSet, DstSet name the sets the addresses must be in (-m set
	// --match-set NAME src|dst, or negated), a match of its own beside
	// -s/-d. The compiled rule set refers to the set, whose contents can
	// be replaced without compiling the rules again (filter.WithSets).
	SrcSet, DstSet       string
	SrcSetNeg, DstSetNeg bool

	SPorts, DPorts     []PortRange
	SPortNeg, DPortNeg bool
	// SPortsMulti and DPortsMulti say the ports came from -m multiport.
	SPortsMulti, DPortsMulti bool

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
	LogLevel   int8 // syslog level, 0-7 (DefaultLogLevel: warning)
	LogFlags   LogFlags

	// Modules are the rule's match modules in the order they were loaded
	// (-m NAME, or implicitly by -p): iptables-save prints them so.
	Modules []string
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
	// Family is the rule set's family when it is an iptables (4) or
	// ip6tables (6) rule set; 0: each rule's family comes from its
	// addresses and protocol.
	Family Family
	// save is set while parsing an iptables-save file (chains are
	// declared before rules, so jumps may precede their chain's rules).
	save bool
	// families holds the IPv4 and IPv6 rule sets a merged rule set was
	// made of (MergeFamilies), for Save.
	families [2]*Ruleset

	// nrules counts the rules the parser added (for its limit check,
	// which must not walk every chain on every line).
	nrules int
	// sizeHint is how many rules the text adds to each chain, by name, as
	// a pre-scan counted them: the parser sizes each chain once.
	sizeHint map[string]int
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

// V6Prefix names the chains of the IPv6 rule set in a merged rule set
// (MergeFamilies): ip6/INPUT, ip6/FORWARD, ip6/OUTPUT and ip6/ before each
// user chain.
const V6Prefix = "ip6/"

// MergeFamilies makes one rule set of an iptables (IPv4) and an
// ip6tables (IPv6) rule set, each keeping its own chains and policies:
// IPv4 packets traverse rs4's chains, IPv6 packets rs6's (named with
// V6Prefix), as iptables and ip6tables do.
func MergeFamilies(rs4, rs6 *Ruleset) *Ruleset {
	m := &Ruleset{Chains: map[string]*Chain{}, Sets: rs4.Sets, families: [2]*Ruleset{rs4, rs6}}
	for fi, rs := range []*Ruleset{rs4, rs6} {
		fam, prefix := Family(4), ""
		if fi == 1 {
			fam, prefix = 6, V6Prefix
		}
		for _, name := range rs.Order {
			ch := rs.Chains[name]
			c := &Chain{Name: prefix + name, Policy: ch.Policy, Pos: ch.Pos, Rules: make([]Rule, len(ch.Rules))}
			for i, r := range ch.Rules {
				r.Chain, r.Family = c.Name, fam
				if _, user := rs.Chains[r.Target]; user {
					r.Target = prefix + r.Target
				}
				c.Rules[i] = r
			}
			m.Chains[c.Name] = c
			m.Order = append(m.Order, c.Name)
			m.nrules += len(c.Rules)
		}
	}
	return m
}

// Families returns the IPv4 and IPv6 rule sets a merged rule set was
// made of (nil, nil if it was not merged).
func (rs *Ruleset) Families() (*Ruleset, *Ruleset) { return rs.families[0], rs.families[1] }

// IsBuiltinChain reports whether name is a built-in chain of either
// family's rule set (INPUT, or ip6/INPUT in a merged one).
func IsBuiltinChain(name string) bool { return IsBuiltin(strings.TrimPrefix(name, V6Prefix)) }

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

// String formats a rule as iptables-save prints it (Save).
func (r *Rule) String() string { return r.Save() }

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

// ProtoName names a protocol number as iptables-save prints it.
func ProtoName(p int) string { return protoSaveName(p) }

// FlagNames formats a TCP flag mask as iptables-save does (SYN,ACK; NONE).
func FlagNames(m uint8) string { return saveTCPFlags(m) }
