package rules

import (
	"fmt"
	"strconv"
	"strings"
)

// Canonical printing: a rule as iptables-save prints it (iptables 1.8.9,
// nf_tables backend, as of 2026-12): the generic options in the order
// -s -d -i -o -p, then each match in the order it was loaded (implicit
// protocol matches included) with its options in the module's own order,
// then the target. The differential test against the real iptables-save
// (iptables_diff_test.go) checks this for thousands of generated rules.

// LogFlags are the LOG target's optional flags.
type LogFlags uint8

// LOG flags, in the order iptables-save prints them.
const (
	LogTCPSequence LogFlags = 1 << iota
	LogTCPOptions
	LogIPOptions
	LogUID
	LogMACDecode
)

var logFlagNames = []string{"--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid", "--log-macdecode"}

// DefaultLogLevel is LOG's level without --log-level (warning).
const DefaultLogLevel = 4

// Save prints the rule as iptables-save does.
func (r *Rule) Save() string {
	var b strings.Builder
	b.WriteString("-A ")
	b.WriteString(r.Chain)
	neg := func(n bool) {
		if n {
			b.WriteString(" !")
		}
	}
	if len(r.Src) > 0 {
		neg(r.SrcNeg)
		b.WriteString(" -s " + joinPrefixes(r.Src))
	}
	if len(r.Dst) > 0 {
		neg(r.DstNeg)
		b.WriteString(" -d " + joinPrefixes(r.Dst))
	}
	if r.In != "" {
		neg(r.InNeg)
		b.WriteString(" -i " + r.In)
	}
	if r.Out != "" {
		neg(r.OutNeg)
		b.WriteString(" -o " + r.Out)
	}
	if r.Proto >= 0 {
		neg(r.ProtoNeg)
		b.WriteString(" -p " + protoSaveName(r.Proto))
	}
	for _, m := range r.modulesToSave() {
		b.WriteString(" -m " + m)
		matchDefs[m].save(&b, r)
	}
	b.WriteString(" -j " + r.Target)
	switch r.Target {
	case "REJECT":
		w := r.RejectWith
		if w == "" {
			w = defaultRejectWith(r.Family)
		}
		b.WriteString(" --reject-with " + w)
	case "LOG":
		if r.LogPrefix != "" {
			b.WriteString(" --log-prefix")
			saveString(&b, r.LogPrefix)
		}
		if r.LogLevel != DefaultLogLevel {
			fmt.Fprintf(&b, " --log-level %d", r.LogLevel)
		}
		for i, n := range logFlagNames {
			if r.LogFlags&(1<<i) != 0 {
				b.WriteString(" " + n)
			}
		}
	}
	return b.String()
}

// modulesToSave are the rule's matches; a rule built without the parser
// (the structured form) gets the ones its fields need, in iptables' order.
func (r *Rule) modulesToSave() []string {
	if r.Modules != nil {
		return r.Modules
	}
	var out []string
	if r.SrcSet != "" || r.DstSet != "" {
		out = append(out, "set")
	}
	if name, ok := protoMatch[r.Proto]; ok && (len(r.SPorts) == 1 && !r.SPortsMulti || len(r.DPorts) == 1 && !r.DPortsMulti || r.TCPFlags || r.ICMPType >= 0) {
		out = append(out, name)
	}
	if r.SPortsMulti || r.DPortsMulti || len(r.SPorts) > 1 || len(r.DPorts) > 1 {
		out = append(out, "multiport")
	}
	if r.States != 0 {
		out = append(out, "conntrack")
	}
	if r.Limit != nil {
		out = append(out, map[bool]string{false: "limit", true: "hashlimit"}[r.Limit.Hash])
	}
	if r.Comment != "" {
		out = append(out, "comment")
	}
	return out
}

// saveString prints a value as xtables_save_string does: bare when it is
// only letters, digits, '_' and '-'; otherwise in double quotes with '"',
// '\' and '\” escaped by a backslash.
func saveString(b *strings.Builder, s string) {
	bare := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			bare = false
			break
		}
	}
	b.WriteByte(' ')
	if bare {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func negOpt(b *strings.Builder, neg bool, opt string) {
	if neg {
		b.WriteString(" !")
	}
	b.WriteString(" " + opt)
}

func savePorts(b *strings.Builder, r *Rule) {
	if len(r.SPorts) == 1 && !r.SPortsMulti {
		negOpt(b, r.SPortNeg, "--sport "+portString(r.SPorts[0]))
	}
	if len(r.DPorts) == 1 && !r.DPortsMulti {
		negOpt(b, r.DPortNeg, "--dport "+portString(r.DPorts[0]))
	}
}

func saveTCP(b *strings.Builder, r *Rule) {
	savePorts(b, r)
	if r.TCPFlags {
		negOpt(b, r.TCPFlagsNeg, "--tcp-flags "+saveTCPFlags(r.TCPFlagsMask)+" "+saveTCPFlags(r.TCPFlagsComp))
	}
}

func saveICMP(b *strings.Builder, r *Rule) {
	opt := "--icmp-type "
	if r.Proto == 58 {
		opt = "--icmpv6-type "
	}
	switch {
	case r.ICMPType < 0:
		negOpt(b, r.ICMPNeg, opt+"any")
	case r.ICMPCode < 0:
		negOpt(b, r.ICMPNeg, opt+strconv.Itoa(r.ICMPType))
	default:
		negOpt(b, r.ICMPNeg, fmt.Sprintf("%s%d/%d", opt, r.ICMPType, r.ICMPCode))
	}
}

func saveMultiport(b *strings.Builder, r *Rule) {
	list := func(ps []PortRange) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = portString(p)
		}
		return strings.Join(s, ",")
	}
	if r.SPortsMulti || len(r.SPorts) > 1 {
		if len(r.SPorts) > 0 {
			negOpt(b, r.SPortNeg, "--sports "+list(r.SPorts))
		}
	}
	if r.DPortsMulti || len(r.DPorts) > 1 {
		if len(r.DPorts) > 0 {
			negOpt(b, r.DPortNeg, "--dports "+list(r.DPorts))
		}
	}
}

func saveStateMatch(b *strings.Builder, r *Rule) {
	opt := "--ctstate "
	for _, m := range r.Modules {
		if m == "state" {
			opt = "--state "
		}
	}
	negOpt(b, r.StateNeg, opt+StateNames(r.States))
}

func saveComment(b *strings.Builder, r *Rule) {
	b.WriteString(" --comment")
	saveString(b, r.Comment)
}

func saveSet(b *strings.Builder, r *Rule) {
	if r.SrcSet != "" {
		negOpt(b, r.SrcSetNeg, "--match-set "+r.SrcSet+" src")
	}
	if r.DstSet != "" {
		negOpt(b, r.DstSetNeg, "--match-set "+r.DstSet+" dst")
	}
}

func saveLimit(b *strings.Builder, r *Rule) {
	l := r.Limit
	if l.Hash {
		b.WriteString(" " + strings.TrimPrefix(l.String(), "-m hashlimit "))
		return
	}
	b.WriteString(" --limit " + limitRateString(l.Rate, l.Per))
	if l.Burst != 5 {
		fmt.Fprintf(b, " --limit-burst %d", l.Burst)
	}
}

// limitRateString prints a -m limit rate as libxt_limit does: the rate is
// kept as a period in 1/10000 s (XT_LIMIT_SCALE) and printed in the
// largest unit that divides it well.
func limitRateString(n uint64, per int64) string {
	const scale = 10000
	rates := []struct {
		name string
		mult uint64
	}{{"day", scale * 86400}, {"hour", scale * 3600}, {"min", scale * 60}, {"sec", scale}}
	period := scale * uint64(per/1e9) / n
	if period == 0 {
		period = 1
	}
	i := 1
	for ; i < len(rates); i++ {
		if period > rates[i].mult || rates[i].mult/period < rates[i].mult%period {
			break
		}
	}
	return fmt.Sprintf("%d/%s", rates[i-1].mult/period, rates[i-1].name)
}

// Save prints the rule set as iptables-save prints the filter table
// (without the comment header and with zero counters); a merged rule set
// (MergeFamilies) as iptables-save's table, then ip6tables-save's, each
// after a comment line naming it.
func (rs *Ruleset) Save() string {
	if v4, v6 := rs.Families(); v4 != nil {
		return "# IPv4 (iptables-save)\n" + v4.Save() + "# IPv6 (ip6tables-save)\n" + v6.Save()
	}
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, name := range rs.Order {
		ch := rs.Chains[name]
		pol := ch.Policy
		if !IsBuiltin(name) {
			pol = "-"
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", name, pol)
	}
	for _, name := range rs.Order {
		for i := range rs.Chains[name].Rules {
			b.WriteString(rs.Chains[name].Rules[i].Save())
			b.WriteByte('\n')
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
