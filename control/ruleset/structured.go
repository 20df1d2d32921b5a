package ruleset

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/dataplane/rules"
	"go.yaml.in/yaml/v3"
)

// Sets parses rules.sets: each set's addresses, or its file's entries.
func Sets(cfg *config.Config) (map[string][]netip.Prefix, error) { return sets(cfg) }

// sets parses rules.sets.
func sets(cfg *config.Config) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	var errs []error
	for i, s := range cfg.Rules.Sets {
		key := fmt.Sprintf("rules.sets[%d]", i)
		pos := fmt.Sprintf("%s:%d: %s", cfg.Name, config.LineOf(cfg.Lines, key), key)
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: missing", pos))
			continue
		}
		if _, dup := out[s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: set %q is defined twice", pos, s.Name))
			continue
		}
		ps, err := setEntries(cfg, i, pos)
		if err != nil {
			errs = append(errs, err)
		}
		out[s.Name] = ps
	}
	return out, errors.Join(errs...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ruleArgs turns a structured rule into iptables arguments, remembering
// which key produced each argument (for error messages).
func ruleArgs(r *config.Rule) (args, keys []string, err error) {
	ab := &argBuilder{not: map[string]bool{}}
	for _, n := range r.Not {
		if !slices.Contains(negatable, n) {
			return nil, nil, fmt.Errorf("not: %q cannot be negated; want some of %s", n, strings.Join(negatable, ", "))
		}
		ab.not[n] = true
	}
	for _, step := range []func(*config.Rule) error{ab.family, ab.addresses, ab.ports, ab.matches, ab.target} {
		if err := step(r); err != nil {
			return nil, nil, err
		}
	}
	return ab.args, ab.keys, nil
}

// negatable are the structured keys "not" may list.
var negatable = []string{"proto", "src", "dst", "src_set", "dst_set", "sport", "dport", "in", "out", "state", "icmp_type", "tcp_flags"}

// argBuilder collects a rule's iptables arguments and the key of each.
type argBuilder struct {
	args, keys []string
	not        map[string]bool
}

// raw appends arguments as they are, all from key.
func (ab *argBuilder) raw(key string, a ...string) {
	for _, x := range a {
		ab.args, ab.keys = append(ab.args, x), append(ab.keys, key)
	}
}

// add appends an option, negated when "not" lists its key.
func (ab *argBuilder) add(key string, a ...string) {
	if ab.not[key] {
		ab.raw(key, "!")
	}
	ab.raw(key, a...)
}

func (ab *argBuilder) family(r *config.Rule) error {
	switch r.Family {
	case "":
	case "ipv4":
		ab.raw("family", "-4")
	case "ipv6":
		ab.raw("family", "-6")
	default:
		return fmt.Errorf("family: %q: want ipv4 or ipv6", r.Family)
	}
	return nil
}

func (ab *argBuilder) addresses(r *config.Rule) error {
	if r.Proto != "" {
		ab.add("proto", "-p", r.Proto)
	}
	if len(r.Src) > 0 {
		ab.add("src", "-s", strings.Join(r.Src, ","))
	}
	if len(r.Dst) > 0 {
		ab.add("dst", "-d", strings.Join(r.Dst, ","))
	}
	if r.SrcSet != "" {
		ab.raw("src_set", "-m", "set")
		ab.add("src_set", "--match-set", r.SrcSet, "src")
	}
	if r.DstSet != "" {
		ab.raw("dst_set", "-m", "set")
		ab.add("dst_set", "--match-set", r.DstSet, "dst")
	}
	return nil
}

func (ab *argBuilder) ports(r *config.Rule) error {
	for _, pp := range []struct{ key, v, one, multi string }{{"sport", r.Sport, "--sport", "--sports"}, {"dport", r.Dport, "--dport", "--dports"}} {
		if pp.v == "" {
			continue
		}
		if strings.Contains(pp.v, ",") {
			ab.raw(pp.key, "-m", "multiport")
			ab.add(pp.key, pp.multi, pp.v)
		} else {
			ab.add(pp.key, pp.one, pp.v)
		}
	}
	if r.In != "" {
		ab.add("in", "-i", r.In)
	}
	if r.Out != "" {
		ab.add("out", "-o", r.Out)
	}
	return nil
}

func (ab *argBuilder) matches(r *config.Rule) error {
	if len(r.State) > 0 {
		ab.raw("state", "-m", "conntrack")
		ab.add("state", "--ctstate", strings.Join(r.State, ","))
	}
	if r.ICMPType != "" {
		opt := "--icmp-type"
		if p := strings.ToLower(r.Proto); p == "icmpv6" || p == "ipv6-icmp" || p == "58" {
			opt = "--icmpv6-type"
		}
		ab.add("icmp_type", opt, r.ICMPType)
	}
	if r.Syn {
		ab.add("syn", "--syn")
	}
	if len(r.TCPFlags) > 0 {
		if len(r.TCPFlags) != 2 {
			return fmt.Errorf(`tcp_flags: want [MASK, COMP], e.g. ["SYN,ACK,FIN,RST", "SYN"]`)
		}
		ab.add("tcp_flags", "--tcp-flags", r.TCPFlags[0], r.TCPFlags[1])
	}
	if r.Comment != "" {
		ab.raw("comment", "-m", "comment", "--comment", r.Comment)
	}
	return nil
}

func (ab *argBuilder) target(r *config.Rule) error {
	if r.Target == "" {
		return fmt.Errorf("target: missing; want ACCEPT, DROP, REJECT, LOG, RETURN or a chain")
	}
	ab.raw("target", "-j", r.Target)
	if r.RejectWith != "" {
		ab.raw("reject_with", "--reject-with", r.RejectWith)
	}
	if r.LogPrefix != "" {
		ab.raw("log_prefix", "--log-prefix", r.LogPrefix)
	}
	return nil
}

// structured builds the rule set of the structured form.
func structured(cfg *config.Config, setMap map[string][]netip.Prefix) (*rules.Ruleset, error) {
	rs := rules.NewRuleset()
	rs.Sets = setMap
	var errs []error
	where := func(key string) rules.Pos {
		return rules.Pos{File: cfg.Name, Line: config.LineOf(cfg.Lines, key)}
	}
	for _, p := range []struct{ chain, policy string }{{"INPUT", cfg.Rules.Policies.Input}, {"FORWARD", cfg.Rules.Policies.Forward}, {"OUTPUT", cfg.Rules.Policies.Output}} {
		if p.policy == "" {
			continue
		}
		if err := rs.SetPolicy(where("rules.policies."+strings.ToLower(p.chain)), p.chain, p.policy); err != nil {
			errs = append(errs, err)
		}
	}
	for i, c := range cfg.Rules.Chains {
		if err := rs.NewChain(where(fmt.Sprintf("rules.chains[%d]", i)), c); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range cfg.Rules.List {
		r := &cfg.Rules.List[i]
		key := fmt.Sprintf("rules.list[%d]", i)
		args, keys, err := ruleArgs(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s.%w", cfg.Name, config.LineOf(cfg.Lines, key), key, err))
			continue
		}
		if err := rs.AppendArgs(where(key), r.Chain, args); err != nil {
			var pe *rules.ParseError
			if errors.As(err, &pe) {
				field := "chain"
				for k, a := range args {
					if a == pe.Token {
						field = keys[k]
						break
					}
				}
				fk := key + "." + field
				errs = append(errs, fmt.Errorf("%s:%d: %s: %q: %s", cfg.Name, config.LineOf(cfg.Lines, fk), fk, pe.Token, pe.Msg))
				continue
			}
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := rs.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// Import converts a parsed rule set (from iptables syntax) to the
// structured form, as YAML under a "rules:" key.
func Import(rs *rules.Ruleset) ([]byte, error) {
	var out struct {
		Rules struct {
			Policies map[string]string `yaml:"policies,omitempty"`
			Chains   []string          `yaml:"chains,omitempty"`
			List     []config.Rule     `yaml:"list,omitempty"`
		} `yaml:"rules"`
	}
	out.Rules.Policies = map[string]string{}
	for _, name := range rs.Order {
		ch := rs.Chains[name]
		if rules.IsBuiltin(name) {
			if ch.Policy != "ACCEPT" {
				out.Rules.Policies[strings.ToLower(name)] = ch.Policy
			}
		} else {
			out.Rules.Chains = append(out.Rules.Chains, name)
		}
	}
	v6only := rs.NumRules() > 0
	for _, name := range rs.Order {
		for i := range rs.Chains[name].Rules {
			r := &rs.Chains[name].Rules[i]
			v6only = v6only && r.Family == 6
			out.Rules.List = append(out.Rules.List, toStructured(r))
		}
	}
	y, err := yaml.Marshal(out)
	if err == nil && v6only && len(out.Rules.Policies) > 0 {
		// The structured form has one set of policies, for both families.
		y = append([]byte("# These are ip6tables rules: in the structured form their policies apply to\n"+
			"# IPv4 too. To give each family its own, keep them in iptables syntax in\n"+
			"# rules.file6 (or rules.iptables6), beside the IPv4 rules in rules.file.\n"), y...)
	}
	return y, err
}

// familyImplied reports whether a rule's family follows from its
// addresses or protocol (so the structured form need not say it).
func familyImplied(r *rules.Rule) bool {
	if len(r.Src) > 0 || len(r.Dst) > 0 || r.SrcSet != "" || r.DstSet != "" {
		return true
	}
	return !r.ProtoNeg && (r.Proto == 1 && r.Family == 4 || r.Proto == 58 && r.Family == 6)
}

func toStructured(r *rules.Rule) config.Rule {
	c := config.Rule{Chain: r.Chain, Target: r.Target, RejectWith: r.RejectWith, LogPrefix: r.LogPrefix, Comment: r.Comment,
		In: r.In, Out: r.Out, SrcSet: r.SrcSet, DstSet: r.DstSet}
	neg := func(n bool, key string) {
		if n {
			c.Not = append(c.Not, key)
		}
	}
	if r.Family != 0 && !familyImplied(r) {
		c.Family = map[rules.Family]string{4: "ipv4", 6: "ipv6"}[r.Family]
	}
	if r.Proto >= 0 {
		c.Proto = rules.ProtoName(r.Proto)
		neg(r.ProtoNeg, "proto")
	}
	for _, p := range r.Src {
		c.Src = append(c.Src, p.String())
	}
	for _, p := range r.Dst {
		c.Dst = append(c.Dst, p.String())
	}
	neg(len(r.Src) > 0 && r.SrcNeg, "src")
	neg(len(r.Dst) > 0 && r.DstNeg, "dst")
	neg(r.SrcSet != "" && r.SrcSetNeg, "src_set")
	neg(r.DstSet != "" && r.DstSetNeg, "dst_set")
	ports := func(ps []rules.PortRange) string {
		var s []string
		for _, p := range ps {
			if p.Lo == p.Hi {
				s = append(s, fmt.Sprint(p.Lo))
			} else {
				s = append(s, fmt.Sprintf("%d:%d", p.Lo, p.Hi))
			}
		}
		return strings.Join(s, ",")
	}
	if len(r.SPorts) > 0 {
		c.Sport = ports(r.SPorts)
		neg(r.SPortNeg, "sport")
	}
	if len(r.DPorts) > 0 {
		c.Dport = ports(r.DPorts)
		neg(r.DPortNeg, "dport")
	}
	if r.In != "" {
		neg(r.InNeg, "in")
	}
	if r.Out != "" {
		neg(r.OutNeg, "out")
	}
	if r.States != 0 {
		c.State = strings.Split(rules.StateNames(r.States), ",")
		neg(r.StateNeg, "state")
	}
	if r.ICMPType >= 0 {
		c.ICMPType = fmt.Sprint(r.ICMPType)
		if r.ICMPCode >= 0 {
			c.ICMPType += fmt.Sprintf("/%d", r.ICMPCode)
		}
		neg(r.ICMPNeg, "icmp_type")
	}
	if r.TCPFlags {
		c.TCPFlags = []string{rules.FlagNames(r.TCPFlagsMask), rules.FlagNames(r.TCPFlagsComp)}
		neg(r.TCPFlagsNeg, "tcp_flags")
	}
	return c
}
