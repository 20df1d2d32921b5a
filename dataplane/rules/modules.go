package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode"
)

// A rule's options are parsed the way iptables parses them: a short loop
// over the tokens handles the generic options (-p, -s, -d, -i, -o, -m,
// -j, !) and hands every other option to the loaded modules, each of which
// has its own option table (matchDef, like an iptables extension's
// xt_option_entry list), its protocol requirement, its "only once" rules,
// a final check, and its canonical printing (save.go). As in iptables, an
// option no loaded module knows loads the protocol's own match when -p
// names one (-p tcp --dport 22 loads -m tcp), so the implicit modules
// appear where iptables-save prints them.

// optDef is one option of a module.
type optDef struct {
	names []string // the first is the canonical name
	nargs int
	neg   bool // may be negated with a preceding "!"
	parse func(p *ruleParser, neg bool, args []token) error
}

// matchDef is a match module (-m NAME).
type matchDef struct {
	name string
	// protos are the -p values the module needs (nil: any); need names
	// them for the message.
	protos []int
	need   string
	opts   []optDef
	// final checks the module once every option is in (nil: none).
	final func(p *ruleParser, m *loaded) error
	// save prints the module's options as iptables-save does.
	save func(b *strings.Builder, r *Rule)
}

// loaded is a module loaded into the rule being parsed.
type loaded struct {
	def  *matchDef
	seen map[string]bool // options given, by canonical name
	at   token           // where it was loaded (the -m value, or the option that loaded it)
}

// targetDef is a target (-j NAME) with options.
type targetDef struct {
	name  string
	opts  []optDef
	final func(p *ruleParser) error
}

var portProtos = []int{6, 17, 132}

// matchDefs are the match modules dpfw implements, by name.
var matchDefs = map[string]*matchDef{}

func init() {
	for _, m := range []*matchDef{
		{name: "tcp", protos: []int{6}, need: "-p tcp", opts: []optDef{
			{names: []string{"--sport", "--source-port"}, nargs: 1, neg: true, parse: portOpt(false, "tcp")},
			{names: []string{"--dport", "--destination-port"}, nargs: 1, neg: true, parse: portOpt(true, "tcp")},
			{names: []string{"--tcp-flags"}, nargs: 2, neg: true, parse: tcpFlagsOpt},
			{names: []string{"--syn"}, neg: true, parse: synOpt},
			{names: []string{"--tcp-option"}, nargs: 1, neg: true, parse: unsupportedOpt("--tcp-option")},
		}, final: tcpFinal, save: saveTCP},
		{name: "udp", protos: []int{17}, need: "-p udp", opts: []optDef{
			// libxt_udp resolves a service of any protocol; tcp, sctp
			// and multiport only their own (iptables 1.8.9).
			{names: []string{"--sport", "--source-port"}, nargs: 1, neg: true, parse: portOpt(false, "")},
			{names: []string{"--dport", "--destination-port"}, nargs: 1, neg: true, parse: portOpt(true, "")},
		}, save: savePorts},
		{name: "sctp", protos: []int{132}, need: "-p sctp", opts: []optDef{
			{names: []string{"--sport", "--source-port"}, nargs: 1, neg: true, parse: portOpt(false, "sctp!")},
			{names: []string{"--dport", "--destination-port"}, nargs: 1, neg: true, parse: portOpt(true, "sctp!")},
			{names: []string{"--chunk-types"}, nargs: 2, neg: true, parse: unsupportedOpt("--chunk-types")},
		}, save: savePorts},
		{name: "icmp", protos: []int{1}, need: "-p icmp", opts: []optDef{
			{names: []string{"--icmp-type"}, nargs: 1, neg: true, parse: icmpOpt(false)},
		}, save: saveICMP},
		{name: "icmp6", protos: []int{58}, need: "-p icmpv6", opts: []optDef{
			{names: []string{"--icmpv6-type"}, nargs: 1, neg: true, parse: icmpOpt(true)},
		}, save: saveICMP},
		{name: "multiport", protos: portProtos, need: "-p tcp, -p udp or -p sctp", opts: []optDef{
			{names: []string{"--sports", "--source-ports"}, nargs: 1, neg: true, parse: multiportOpt(false)},
			{names: []string{"--dports", "--destination-ports"}, nargs: 1, neg: true, parse: multiportOpt(true)},
			{names: []string{"--ports"}, nargs: 1, neg: true, parse: unsupportedOpt("--ports")},
		}, final: multiportFinal, save: saveMultiport},
		{name: "state", opts: []optDef{
			{names: []string{"--state"}, nargs: 1, neg: true, parse: stateOpt},
		}, final: needOption("--state"), save: saveStateMatch},
		{name: "conntrack", opts: []optDef{
			{names: []string{"--ctstate"}, nargs: 1, neg: true, parse: stateOpt},
		}, final: needOption("--ctstate"), save: saveStateMatch},
		{name: "comment", opts: []optDef{
			{names: []string{"--comment"}, nargs: 1, parse: commentOpt},
		}, final: needOption("--comment"), save: saveComment},
		{name: "limit", opts: []optDef{
			{names: []string{"--limit"}, nargs: 1, parse: limitOpt},
			{names: []string{"--limit-burst"}, nargs: 1, parse: limitOpt},
		}, save: saveLimit},
		{name: "hashlimit", opts: hashlimitOpts(), final: hashlimitFinal, save: saveLimit},
		{name: "set", opts: []optDef{
			{names: []string{"--match-set"}, nargs: 2, neg: true, parse: setOpt},
		}, final: needOption("--match-set"), save: saveSet},
	} {
		matchDefs[m.name] = m
	}
	matchDefs["icmpv6"] = matchDefs["icmp6"]
}

// protoMatch is the match -p loads implicitly, by protocol.
var protoMatch = map[int]string{6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmp6"}

// unsupportedMatches are iptables matches dpfw does not implement, with
// the supported alternative where there is one.
var unsupportedMatches = map[string]string{
	"connlimit": "to cap new connections per source use -m hashlimit --hashlimit-above RATE --hashlimit-mode srcip with -m conntrack --ctstate NEW",
	"recent":    "to rate-limit sources use -m hashlimit --hashlimit-mode srcip",
	"iprange":   "list the addresses with -s/-d or a set (-m set --match-set NAME src)",
	"addrtype":  "match the addresses with -s/-d",
	"mark":      "", "connmark": "", "owner": "", "physdev": "", "mac": "", "string": "", "u32": "", "time": "",
	"pkttype": "", "length": "", "tos": "", "dscp": "", "ttl": "", "hl": "", "ecn": "", "policy": "", "helper": "",
	"socket": "", "cgroup": "", "bpf": "", "quota": "", "statistic": "", "nfacct": "", "rpfilter": "", "devgroup": "",
	"cpu": "", "realm": "", "rateest": "", "osf": "", "dccp": "", "udplite": "", "esp": "", "ah": "", "mh": "",
	"frag": "", "hbh": "", "dst": "", "rt": "", "ipv6header": "", "ipvs": "", "cluster": "", "connbytes": "",
	"connlabel": "", "conntrack-zone": "", "infiniband": "", "l2tp": "", "tcpmss": "",
}

// unsupportedTargets are iptables targets dpfw does not implement.
var unsupportedTargets = map[string]string{
	"NFLOG": "dpfw logs with -j LOG (its own log stream)",
	"ULOG":  "dpfw logs with -j LOG (its own log stream)",
	"QUEUE": "", "NFQUEUE": "", "MARK": "", "CONNMARK": "", "DNAT": "dpfw implements the filter table only",
	"SNAT": "dpfw implements the filter table only", "MASQUERADE": "dpfw implements the filter table only",
	"REDIRECT": "dpfw implements the filter table only", "NETMAP": "dpfw implements the filter table only",
	"CT": "", "NOTRACK": "", "TCPMSS": "", "TRACE": "", "AUDIT": "", "CLASSIFY": "", "SET": "", "TEE": "",
	"SECMARK": "", "CONNSECMARK": "", "CHECKSUM": "", "TOS": "", "DSCP": "", "TTL": "", "HL": "", "ECN": "",
	"IDLETIMER": "", "LED": "", "SYNPROXY": "", "TPROXY": "", "HMARK": "", "RATEEST": "", "CLUSTERIP": "",
}

// targetDefs are the targets with options.
var targetDefs = map[string]*targetDef{
	"REJECT": {name: "REJECT", opts: []optDef{
		{names: []string{"--reject-with"}, nargs: 1, parse: rejectOpt},
	}, final: rejectFinal},
	"LOG": {name: "LOG", opts: []optDef{
		{names: []string{"--log-prefix"}, nargs: 1, parse: logPrefixOpt},
		{names: []string{"--log-level"}, nargs: 1, parse: logLevelOpt},
		{names: []string{"--log-tcp-sequence"}, parse: logFlagOpt(LogTCPSequence)},
		{names: []string{"--log-tcp-options"}, parse: logFlagOpt(LogTCPOptions)},
		{names: []string{"--log-ip-options"}, parse: logFlagOpt(LogIPOptions)},
		{names: []string{"--log-uid"}, parse: logFlagOpt(LogUID)},
		{names: []string{"--log-macdecode"}, parse: logFlagOpt(LogMACDecode)},
	}},
}

// builtinTargets have no options (REJECT and LOG are in targetDefs).
var builtinTargets = []string{"ACCEPT", "DROP", "RETURN", "REJECT", "LOG"}

// ruleParser parses one rule's options (everything after "-A CHAIN").
type ruleParser struct {
	r    *Rule
	fam  Family // the file's family (0: decided per rule)
	sets map[string][]netip.Prefix
	toks []token
	i    int
	at   func(token) Pos
	fail func(token, string, ...any) error

	generic    map[string]bool // generic options given
	mods       []*loaded
	target     *targetDef
	targetSeen map[string]bool
	srcs, dsts []netip.Prefix // -s/-d lists, expanded into rules at the end
	protoTok   token
	ambiguity  []string // the options an ambiguous abbreviation matched
	opt        string   // the canonical name of the option being parsed
	skip       bool     // -4/-6 of the other family: the rule is not this rule set's
}

// genericLong are iptables' own long options (iptables 1.8.9's option
// table), for getopt's abbreviations: an option may be written as any
// prefix that is unique among the options known at that point (--proto
// is --protocol; with -m multiport loaded, --dport is --dports). Each
// maps to its short form ("" for the commands and flags that have no
// place in a rule).
var genericLong = map[string]string{
	"--append": "", "--delete": "", "--insert": "", "--check": "", "--replace": "", "--list": "", "--list-rules": "",
	"--flush": "", "--zero": "", "--new-chain": "", "--delete-chain": "", "--policy": "", "--rename-chain": "",
	"--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d", "--protocol": "-p", "--in-interface": "-i",
	"--jump": "-j", "--table": "-t", "--match": "-m", "--numeric": "", "--out-interface": "-o", "--verbose": "",
	"--wait": "", "--wait-interval": "", "--exact": "", "--fragments": "-f", "--version": "", "--help": "",
	"--line-numbers": "", "--modprobe": "", "--set-counters": "-c", "--goto": "-g", "--ipv4": "-4", "--ipv6": "-6",
}

// genericShort are the short options of a rule.
var genericShort = map[string]bool{"-p": true, "-s": true, "-d": true, "-i": true, "-o": true, "-m": true,
	"-j": true, "-g": true, "-f": true, "-c": true, "-t": true, "-4": true, "-6": true}

// candidate is what a long option may resolve to.
type candidate struct {
	generic string  // a generic option's short form
	opt     *optDef // or a module's or target's option
	seen    map[string]bool
	proto   string // the option of the protocol's implicit match (to load)
}

// resolve finds the option name stands for, as getopt_long does: an exact
// name, or the one option that name is a prefix of. withProto adds the
// options of the protocol's implicit match.
func (p *ruleParser) resolve(name string, withProto string) (c candidate, found, ambiguous bool) {
	p.ambiguity = nil
	var cands []candidate
	var names []string
	add := func(n string, cd candidate) {
		if n == name {
			cands, names = []candidate{cd}, []string{n}
			found = true
		} else if !found && strings.HasPrefix(n, name) {
			for _, x := range cands {
				if x.opt == cd.opt && x.generic == cd.generic {
					return // another spelling of one option
				}
			}
			cands, names = append(cands, cd), append(names, n)
		}
	}
	for n, g := range genericLong {
		if !found {
			add(n, candidate{generic: g})
		}
	}
	if p.target != nil {
		for i := range p.target.opts {
			for _, n := range p.target.opts[i].names {
				add(n, candidate{opt: &p.target.opts[i], seen: p.targetSeen})
			}
		}
	}
	for _, m := range p.mods {
		for i := range m.def.opts {
			for _, n := range m.def.opts[i].names {
				add(n, candidate{opt: &m.def.opts[i], seen: m.seen})
			}
		}
	}
	if withProto != "" {
		d := matchDefs[withProto]
		for i := range d.opts {
			for _, n := range d.opts[i].names {
				add(n, candidate{opt: &d.opts[i], proto: withProto})
			}
		}
	}
	switch len(cands) {
	case 0:
		return c, false, false
	case 1:
		return cands[0], true, false
	}
	slices.Sort(names)
	p.ambiguity = names
	return c, false, true
}

// parse runs the option loop and the final checks.
func (p *ruleParser) parse() error {
	neg, negTok := false, token{}
	for ; p.i < len(p.toks); p.i++ {
		t := p.toks[p.i]
		if t.s == "!" {
			if neg {
				return p.fail(t, "double negation")
			}
			neg, negTok = true, t
			continue
		}
		var err error
		switch {
		case genericShort[t.s]:
			err = p.genericOpt(t.s, t, neg, negTok)
		case strings.HasPrefix(t.s, "--"):
			err = p.longOpt(t, neg, negTok)
		case strings.HasPrefix(t.s, "-") && len(t.s) > 1:
			err = p.fail(t, "%s", p.unknownOption(t.s))
		default:
			err = p.fail(t, "unexpected value; options start with '-' (see iptables(8))")
		}
		if err != nil {
			return err
		}
		neg = false
	}
	if neg {
		return p.fail(negTok, "'!' must be followed by an option it negates")
	}
	return p.finish()
}

// value returns the n values after the current token.
func (p *ruleParser) values(t token, n int) ([]token, error) {
	if p.i+n >= len(p.toks) {
		return nil, p.fail(t, "missing the value of %s", t.s)
	}
	vals := p.toks[p.i+1 : p.i+1+n]
	for _, v := range vals {
		if v.s == "!" || (strings.HasPrefix(v.s, "-") && len(v.s) > 1 && !isNumber(v.s)) {
			return nil, p.fail(t, "missing the value of %s", t.s)
		}
	}
	p.i += n
	return vals, nil
}

func (p *ruleParser) genericOpt(g string, t token, neg bool, negTok token) error {
	switch g {
	case "-m", "-j", "-g", "-c", "-t":
		if neg {
			return p.fail(negTok, "%s cannot be negated", t.s)
		}
	}
	switch g {
	case "-4", "-6":
		return p.familyOpt(t, g, neg, negTok)
	case "-f":
		return p.fail(t, "the -f (fragment) match is not supported: dpfw decides on whole datagrams (later fragments follow their first fragment's verdict)")
	case "-g":
		return p.fail(t, "--goto is not supported; use -j CHAIN")
	case "-t":
		return p.fail(t, "a table is not chosen per rule here: dpfw implements the filter table only (the default)")
	case "-c":
		_, err := p.values(t, 2) // counters: accepted, not kept
		return err
	case "-m":
		v, err := p.values(t, 1)
		if err != nil {
			return err
		}
		return p.load(v[0], v[0].s)
	}
	if p.generic[g] {
		return p.fail(t, "multiple %s flags not allowed (iptables refuses them too); write one rule per value, or a comma list for -s/-d", g)
	}
	p.generic[g] = true
	v, err := p.values(t, 1)
	if err != nil {
		return err
	}
	switch g {
	case "-p":
		return p.protoOpt(v[0], neg)
	case "-s", "-d":
		return p.addrOpt(g, v[0], neg)
	case "-i", "-o":
		return p.ifaceOpt(g, t, v[0], neg)
	case "-j":
		return p.jump(v[0])
	}
	return nil
}

// protoOpt is -p PROTO.
func (p *ruleParser) protoOpt(val token, neg bool) error {
	proto, err := parseProtocol(val.s)
	if err != nil {
		return p.fail(val, "%v", err)
	}
	if proto < 0 && neg {
		return p.fail(val, "! -p %s would never match (iptables refuses it too)", val.s)
	}
	p.r.Proto, p.r.ProtoNeg, p.protoTok = proto, neg, val
	return nil
}

// addrOpt is -s or -d ADDRESS[,ADDRESS…].
func (p *ruleParser) addrOpt(g string, val token, neg bool) error {
	ps, fam, err := parseAddrs(val.s)
	if err != nil {
		return p.fail(val, "%v", err)
	}
	if want := p.family(); want != 0 && fam != want {
		return p.fail(val, "an IPv%d address in an IPv%d rule", fam, want)
	}
	if neg && len(ps) == 1 && ps[0].Bits() == 0 {
		return p.fail(val, "! %s with a /0 prefix would never match (iptables refuses it too)", g)
	}
	if neg && len(ps) > 1 {
		return p.fail(val, "! is not allowed with several addresses (iptables refuses it too): they make one rule each, and the negations would not add up")
	}
	p.r.Family = fam
	if g == "-s" {
		p.srcs, p.r.SrcNeg = ps, neg
	} else {
		p.dsts, p.r.DstNeg = ps, neg
	}
	return nil
}

// badIfaceRune is a character no dpfw port name (ports[].name) has.
func badIfaceRune(c rune) bool {
	return !(c == '_' || c == '.' || c == '-' || c < unicode.MaxASCII && (unicode.IsLetter(c) || unicode.IsDigit(c)))
}

// ifaceOpt is -i or -o PORT.
func (p *ruleParser) ifaceOpt(g string, t, val token, neg bool) error {
	r := p.r
	if len(val.s) > 15 {
		return p.fail(val, "an interface name has at most 15 characters")
	}
	if strings.HasSuffix(val.s, "+") {
		return p.fail(val, "interface wildcards (+) are not supported: name a dpfw port")
	}
	if i := strings.IndexFunc(val.s, badIfaceRune); i >= 0 {
		return p.fail(val, "%q in an interface name: no port can have it (dpfw port names are letters, digits, '_', '.' and '-'), so the rule could never match", val.s[i:i+1])
	}
	if g == "-i" && r.Chain == "OUTPUT" || g == "-o" && r.Chain == "INPUT" {
		return p.fail(t, "can't use %s with %s (iptables refuses it too): OUTPUT packets are matched by where they leave, INPUT packets by where they enter; use FORWARD", g, r.Chain)
	}
	if g == "-i" {
		r.In, r.InNeg = val.s, neg
	} else {
		r.Out, r.OutNeg = val.s, neg
	}
	return nil
}

// familyOpt is -4/-6, as iptables-restore treats it: in a rule set of
// the other family the rule is skipped; in one of both families it makes
// the rule that family's only.
func (p *ruleParser) familyOpt(t token, g string, neg bool, negTok token) error {
	if neg {
		return p.fail(negTok, "%s cannot be negated", t.s)
	}
	want := Family(4)
	if g == "-6" {
		want = 6
	}
	switch {
	case p.fam != 0 && p.fam != want:
		p.skip = true
	case p.r.Family != 0 && p.r.Family != want:
		return p.fail(t, "%s in a rule whose addresses are IPv%d", t.s, p.r.Family)
	default:
		p.r.Family = want
	}
	return nil
}

// family is the rule's family so far: the file's, or what its addresses
// said.
func (p *ruleParser) family() Family {
	if p.fam != 0 {
		return p.fam
	}
	return p.r.Family
}

func (p *ruleParser) load(t token, name string) error {
	def, ok := matchDefs[name]
	if !ok {
		if alt, known := unsupportedMatches[name]; known {
			msg := "the " + name + " match is not supported by dpfw"
			if alt != "" {
				msg += "; " + alt
			}
			return p.fail(t, "%s", msg)
		}
		return p.fail(t, "unknown match module; dpfw has %s", strings.Join(matchNames(), ", "))
	}
	for _, m := range p.mods {
		if m.def == def {
			return p.fail(t, "-m %s is loaded twice: dpfw supports one %s match per rule (combine its options in one)", name, name)
		}
	}
	switch def.name {
	case "limit", "hashlimit":
		if p.r.Limit != nil {
			return p.fail(t, "one rate limit per rule: -m limit and -m hashlimit cannot be combined")
		}
		if def.name == "limit" {
			p.r.Limit = &RateLimit{Rate: 3, Per: 3600e9, Burst: 5, SrcMask: -1, DstMask: -1} // iptables' defaults
		} else {
			p.r.Limit = &RateLimit{Hash: true, Burst: 5, SrcMask: -1, DstMask: -1, Size: DefaultLimitSize}
		}
	}
	p.mods = append(p.mods, &loaded{def: def, seen: map[string]bool{}, at: t})
	p.r.Modules = append(p.r.Modules, def.name)
	return nil
}

func matchNames() []string {
	var out []string
	for n, d := range matchDefs {
		if n == d.name {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (p *ruleParser) jump(v token) error {
	p.r.Target = v.s
	if td, ok := targetDefs[v.s]; ok {
		p.target = td
		return nil
	}
	if alt, known := unsupportedTargets[v.s]; known {
		msg := "the " + v.s + " target is not supported by dpfw"
		if alt != "" {
			msg += "; " + alt
		}
		return p.fail(v, "%s", msg)
	}
	return nil
}

// splitEq turns --opt=value into --opt and value, as iptables' getopt does.
func (p *ruleParser) splitEq(t token) token {
	name, val, ok := strings.Cut(t.s, "=")
	if !ok || !strings.HasPrefix(t.s, "--") {
		return t
	}
	p.toks = slices.Insert(slices.Clone(p.toks), p.i+1, token{s: val, col: t.col + len(name) + 1})
	p.toks[p.i] = token{s: name, col: t.col}
	return p.toks[p.i]
}

// longOpt resolves a long option (getopt's abbreviations included) to a
// generic option, or to the module or target that owns it, and lets it
// parse its values. As in iptables, an option nothing loaded knows loads
// the protocol's match when -p names one (-p tcp --dport 22 is -p tcp -m
// tcp --dport 22).
func (p *ruleParser) longOpt(t token, neg bool, negTok token) error {
	t = p.splitEq(t)
	c, found, _ := p.resolve(t.s, "")
	if !found {
		if name, ok := protoMatch[p.r.Proto]; ok && !p.r.ProtoNeg && !slices.Contains(p.r.Modules, name) {
			if c2, ok2, _ := p.resolve(t.s, name); ok2 && c2.proto != "" {
				if err := p.load(t, name); err != nil {
					return err
				}
				m := p.mods[len(p.mods)-1]
				return p.runOpt(c2.opt, m.seen, t, neg, negTok)
			} else if ok2 {
				c, found = c2, true
			}
		}
	}
	switch {
	case !found && p.ambiguity != nil:
		return p.fail(t, "ambiguous option: could be %s", strings.Join(p.ambiguity, ", "))
	case !found:
		return p.fail(t, "%s", p.unknownOption(t.s))
	case c.opt != nil:
		return p.runOpt(c.opt, c.seen, t, neg, negTok)
	case c.generic == "":
		return p.fail(t, "%s is not an option of a rule (a command or a flag of the iptables program)", t.s)
	}
	return p.genericOpt(c.generic, t, neg, negTok)
}

func findOpt(opts []optDef, name string) *optDef {
	for i := range opts {
		if slices.Contains(opts[i].names, name) {
			return &opts[i]
		}
	}
	return nil
}

func (p *ruleParser) runOpt(o *optDef, seen map[string]bool, t token, neg bool, negTok token) error {
	if neg && !o.neg {
		return p.fail(negTok, "%s cannot be negated", t.s)
	}
	if seen[o.names[0]] {
		return p.fail(t, "only one %s is allowed in a rule (iptables refuses a second one too)", o.names[0])
	}
	seen[o.names[0]] = true
	p.opt = o.names[0]
	vals, err := p.values(t, o.nargs)
	if err != nil {
		return err
	}
	if len(vals) == 0 {
		vals = []token{t}
	}
	return o.parse(p, neg, vals)
}

// unknownOption explains an option no loaded module knows: which module
// or target it belongs to, or the nearest known spelling.
func (p *ruleParser) unknownOption(opt string) string {
	for name, t := range targetDefs {
		if findOpt(t.opts, opt) != nil {
			return fmt.Sprintf("%s goes after -j %s", opt, name)
		}
	}
	var owners []string
	for _, name := range matchNames() {
		if findOpt(matchDefs[name].opts, opt) != nil {
			owners = append(owners, name)
		}
	}
	switch {
	case len(owners) == 1 && matchDefs[owners[0]].protos != nil && protoMatch[matchDefs[owners[0]].protos[0]] == owners[0]:
		return fmt.Sprintf("%s needs %s (or -m %s) before it", opt, matchDefs[owners[0]].need, owners[0])
	case len(owners) > 1:
		return fmt.Sprintf("%s needs -p tcp, -p udp or -p sctp before it", opt)
	case len(owners) == 1:
		return fmt.Sprintf("%s needs -m %s before it", opt, owners[0])
	}
	if s := nearestOption(opt); s != "" && s != opt {
		return "unknown option; did you mean " + s + "?"
	}
	return "unknown option"
}

// finish runs the modules' and the target's final checks and the
// protocol requirements, after every option is in.
func (p *ruleParser) finish() error {
	r := p.r
	for _, m := range p.mods {
		if m.def.protos != nil && (!slices.Contains(m.def.protos, r.Proto) || r.ProtoNeg) {
			return p.fail(m.at, "the %s match needs %s (iptables refuses it otherwise)", m.def.name, m.def.need)
		}
		if m.def.final != nil {
			if err := m.def.final(p, m); err != nil {
				return err
			}
		}
	}
	if (len(p.srcs) > 1 || len(p.dsts) > 1) && (r.SrcNeg || r.DstNeg) {
		return &ParseError{Pos: r.Pos, Msg: "! is not allowed with several source or destination addresses (iptables refuses it too): they make one rule per pair, and a negation would not hold for the others"}
	}
	if r.Target == "" {
		return &ParseError{Pos: r.Pos, Msg: "the rule has no target: add -j ACCEPT, DROP, REJECT, LOG, RETURN or a user chain (iptables' counting rules without -j are not supported: dpfw counts the rules that decide)"}
	}
	if p.target != nil && p.target.final != nil {
		if err := p.target.final(p); err != nil {
			return err
		}
	}
	switch {
	case p.fam != 0:
		r.Family = p.fam
	case r.Family == 0 && r.Proto == 1 && !r.ProtoNeg:
		r.Family = 4
	case r.Family == 0 && r.Proto == 58 && !r.ProtoNeg:
		r.Family = 6
	}
	return p.checkFamily()
}

// checkFamily refuses matches of the other family than the rule's: a set
// of only the other family's addresses, an ICMP match of the other ICMP.
func (p *ruleParser) checkFamily() error {
	r := p.r
	for _, set := range [2]string{r.SrcSet, r.DstSet} {
		if fam := setFamily(p.sets[set]); set != "" && fam != 0 && r.Family != 0 && fam != r.Family {
			return &ParseError{Pos: r.Pos, Token: set, Msg: fmt.Sprintf("set %q holds only IPv%d addresses and this rule is IPv%d, so it could never match (iptables and ip6tables refuse a set of the other family too); use a set of this family, or one of both", set, fam, r.Family)}
		}
	}
	if r.ICMPType >= 0 || slices.Contains(r.Modules, "icmp") || slices.Contains(r.Modules, "icmp6") {
		want := Family(4)
		if r.Proto == 58 {
			want = 6
		}
		if r.Family != 0 && r.Family != want {
			return &ParseError{Pos: r.Pos, Msg: fmt.Sprintf("an ICMP%s match in an IPv%d rule", map[bool]string{true: "v6", false: ""}[want == 6], r.Family)}
		}
	}
	return nil
}

// expand is the rule once per source and destination, as iptables makes
// one rule of each pair of -s and -d addresses (source-major).
func (p *ruleParser) expand() []Rule {
	if p.skip {
		return nil
	}
	r := *p.r
	if (len(p.srcs) > 1 || len(p.dsts) > 1) && (r.SrcNeg || r.DstNeg) {
		// Checked by finish: unreachable.
		panic("filter: negated address with several addresses")
	}
	if len(p.srcs) <= 1 && len(p.dsts) <= 1 {
		r.Src, r.Dst = p.srcs, p.dsts
		if len(r.Src) == 1 && r.Src[0].Bits() == 0 {
			r.Src = nil // 0.0.0.0/0: every address, no match at all
		}
		if len(r.Dst) == 1 && r.Dst[0].Bits() == 0 {
			r.Dst = nil
		}
		return []Rule{r}
	}
	srcs, dsts := orAny(p.srcs), orAny(p.dsts)
	out := make([]Rule, 0, len(srcs)*len(dsts))
	for _, s := range srcs {
		for _, d := range dsts {
			x := r
			x.Src, x.Dst = prefixOrNil(s), prefixOrNil(d)
			out = append(out, x)
		}
	}
	return out
}

func nonEmpty(set, list []netip.Prefix) []netip.Prefix {
	if set != nil {
		return set
	}
	return list
}

func orAny(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return []netip.Prefix{{}}
	}
	return ps
}

func prefixOrNil(p netip.Prefix) []netip.Prefix {
	if !p.IsValid() || p.Bits() == 0 {
		return nil
	}
	return []netip.Prefix{p}
}

// Module option handlers.

// portOpt parses --sport/--dport, resolving service names of network
// ("": any protocol). The range is kept as iptables-nft keeps it: the
// whole range is no port match (the module stays, as "-m tcp"), and (tcp
// and udp; network "sctp!" keeps it) a negated range from 0 is the
// positive range above it.
func portOpt(dst bool, network string) func(p *ruleParser, neg bool, v []token) error {
	keepNeg := strings.HasSuffix(network, "!")
	network = strings.TrimSuffix(network, "!")
	return func(p *ruleParser, neg bool, v []token) error {
		pr, err := parsePortRange(v[0].s, network)
		if err != nil {
			return p.fail(v[0], "%v", err)
		}
		switch {
		case pr == PortRange{0, 65535} && neg:
			return p.fail(v[0], "! %s 0:65535 matches no packet: remove the rule (iptables-nft saves it as a rule that matches every packet, a deliberate difference)", p.opt)
		case pr == PortRange{0, 65535}:
			return nil
		case neg && pr.Lo == 0 && !keepNeg:
			pr, neg = PortRange{pr.Hi + 1, 65535}, false
		}
		if dst {
			if p.r.DPorts != nil {
				return p.fail(v[0], "--dport and -m multiport --dports in one rule are not supported by dpfw; write two rules")
			}
			p.r.DPorts, p.r.DPortNeg = []PortRange{pr}, neg
		} else {
			if p.r.SPorts != nil {
				return p.fail(v[0], "--sport and -m multiport --sports in one rule are not supported by dpfw; write two rules")
			}
			p.r.SPorts, p.r.SPortNeg = []PortRange{pr}, neg
		}
		return nil
	}
}

func tcpFlagsOpt(p *ruleParser, neg bool, v []token) error {
	mask, err := parseTCPFlags(v[0].s)
	if err != nil {
		return p.fail(v[0], "%v", err)
	}
	if mask == 0 {
		return p.fail(v[0], "a --tcp-flags mask of NONE tests no flag: legacy iptables then never matches (unless COMP is NONE) while iptables-nft drops the match and matches every TCP packet; dpfw refuses it (a deliberate difference): name the flags to test")
	}
	comp, err := parseTCPFlags(v[1].s)
	if err != nil {
		return p.fail(v[1], "%v", err)
	}
	r := p.r
	r.TCPFlags, r.TCPFlagsMask, r.TCPFlagsComp, r.TCPFlagsNeg = true, mask, comp, neg
	return nil
}

// synOpt is --syn: --tcp-flags FIN,SYN,RST,ACK SYN.
func synOpt(p *ruleParser, neg bool, v []token) error {
	r := p.r
	r.TCPFlags, r.TCPFlagsMask, r.TCPFlagsComp, r.TCPFlagsNeg = true, 0x17, 0x02, neg
	return nil
}

func tcpFinal(p *ruleParser, m *loaded) error {
	if m.seen["--syn"] && m.seen["--tcp-flags"] {
		return p.fail(m.at, "only one of --syn and --tcp-flags is allowed (iptables refuses both)")
	}
	return nil
}

func unsupportedOpt(name string) func(p *ruleParser, neg bool, v []token) error {
	return func(p *ruleParser, neg bool, v []token) error {
		msg := name + " is not supported by dpfw"
		if name == "--ports" {
			msg += "; write two rules, one with --sports and one with --dports"
		}
		return p.fail(v[0], "%s", msg)
	}
}

func icmpOpt(v6 bool) func(p *ruleParser, neg bool, v []token) error {
	return func(p *ruleParser, neg bool, v []token) error {
		typ, code, err := parseICMP(v[0].s, v6)
		if err != nil {
			return p.fail(v[0], "%v", err)
		}
		p.r.ICMPType, p.r.ICMPCode, p.r.ICMPNeg = typ, code, neg
		return nil
	}
}

// multiportSlots is the most ports one multiport match holds; a range
// takes two (xt_multiport's XT_MULTI_PORTS).
const multiportSlots = 15

func multiportOpt(dst bool) func(p *ruleParser, neg bool, v []token) error {
	return func(p *ruleParser, neg bool, v []token) error {
		var prs []PortRange
		slots := 0
		for _, s := range strings.Split(v[0].s, ",") {
			if lo, hi, isRange := strings.Cut(s, ":"); isRange && (lo == "" || hi == "") {
				return p.fail(v[0], "%q: a multiport range has both ends (PORT:PORT), unlike --dport's", s)
			}
			pr, err := parsePortRange(s, map[int]string{6: "tcp", 17: "udp", 132: "sctp"}[p.r.Proto])
			if err != nil {
				return p.fail(v[0], "%v", err)
			}
			prs = append(prs, pr)
			slots++
			if strings.Contains(s, ":") {
				slots++
			}
		}
		if slots > multiportSlots {
			return p.fail(v[0], "too many ports: a multiport match holds %d (a range counts as two); write several rules", multiportSlots)
		}
		target, which := &p.r.DPorts, "--dport"
		if !dst {
			target, which = &p.r.SPorts, "--sport"
		}
		if *target != nil {
			return p.fail(v[0], "%s and -m multiport in one rule are not supported by dpfw; write two rules", which)
		}
		*target = prs
		if dst {
			p.r.DPortNeg, p.r.DPortsMulti = neg, true
		} else {
			p.r.SPortNeg, p.r.SPortsMulti = neg, true
		}
		return nil
	}
}

func multiportFinal(p *ruleParser, m *loaded) error {
	n := 0
	for _, o := range []string{"--sports", "--dports", "--ports"} {
		if m.seen[o] {
			n++
		}
	}
	switch {
	case n == 0:
		return p.fail(m.at, "-m multiport needs --sports or --dports")
	case n > 1:
		return p.fail(m.at, "multiport: --sports and --dports cannot be used together (iptables refuses it too); write two rules")
	}
	return nil
}

func stateOpt(p *ruleParser, neg bool, v []token) error {
	var m uint8
	for _, s := range strings.Split(v[0].s, ",") {
		b, ok := stateBits[strings.ToUpper(s)]
		if !ok {
			return p.fail(v[0], "unknown state %q; want INVALID, NEW, ESTABLISHED, RELATED or UNTRACKED, comma-separated", s)
		}
		m |= b
	}
	if p.r.States != 0 {
		return p.fail(v[0], "-m state and -m conntrack --ctstate in one rule are not supported by dpfw; use one of them")
	}
	p.r.States, p.r.StateNeg = m, neg
	return nil
}

func needOption(opt string) func(p *ruleParser, m *loaded) error {
	return func(p *ruleParser, m *loaded) error {
		if !m.seen[opt] {
			return p.fail(m.at, "-m %s needs %s", m.def.name, opt)
		}
		return nil
	}
}

// maxComment is the longest comment iptables-nft accepts (256 bytes, as
// of iptables 1.8.9).
const maxComment = 256

func commentOpt(p *ruleParser, neg bool, v []token) error {
	if len(v[0].s) > maxComment {
		return p.fail(v[0], "a comment has at most %d characters", maxComment)
	}
	// iptables-nft keeps 255 of them (the kernel's comment ends in NUL).
	p.r.Comment = v[0].s[:min(len(v[0].s), maxComment-1)]
	return nil
}

func limitOpt(p *ruleParser, neg bool, v []token) error {
	return p.limitOption(p.opt, v[0])
}

func (p *ruleParser) limitOption(opt string, v token) error {
	r := p.r
	if err := parseLimitOption(r, opt, v.s); err != nil {
		return p.fail(v, "%v", err)
	}
	return nil
}

func hashlimitOpts() []optDef {
	var out []optDef
	for _, n := range []string{"--hashlimit-upto", "--hashlimit-above", "--hashlimit", "--hashlimit-burst",
		"--hashlimit-mode", "--hashlimit-srcmask", "--hashlimit-dstmask", "--hashlimit-name", "--hashlimit-htable-size",
		"--hashlimit-htable-max", "--hashlimit-htable-expire", "--hashlimit-htable-gcinterval"} {
		out = append(out, optDef{names: []string{n}, nargs: 1, parse: limitOpt})
	}
	return out
}

func hashlimitFinal(p *ruleParser, m *loaded) error {
	l := p.r.Limit
	switch {
	case l == nil || l.Rate == 0:
		return p.fail(m.at, "-m hashlimit needs --hashlimit-upto RATE or --hashlimit-above RATE")
	case l.Name == "":
		return p.fail(m.at, "-m hashlimit needs --hashlimit-name NAME (as iptables)")
	case p.family() == 4 && (l.SrcMask > 32 || l.DstMask > 32):
		return p.fail(m.at, "an IPv4 rule's --hashlimit-srcmask/--hashlimit-dstmask is at most 32")
	}
	return nil
}

func setOpt(p *ruleParser, neg bool, v []token) error {
	name, dir := v[0], v[1]
	ps, ok := p.sets[name.s]
	if !ok {
		var known []string
		for n := range p.sets {
			known = append(known, n)
		}
		msg := fmt.Sprintf("no set named %q; define it under rules.sets in the config", name.s)
		if best := nearestName(name.s, known); best != "" {
			msg += fmt.Sprintf("; did you mean %q?", best)
		}
		return p.fail(name, "%s", msg)
	}
	r := p.r
	switch dir.s {
	case "src":
		r.SrcSet, r.SrcSetNeg = name.s, neg
	case "dst":
		r.DstSet, r.DstSetNeg = name.s, neg
	default:
		return p.fail(dir, "want src or dst (dpfw sets hold addresses)")
	}
	if fam := setFamily(ps); fam != 0 && r.Family == 0 {
		r.Family = fam
	}
	return nil
}

// setFamily is the family of a set's addresses (0: mixed or empty).
func setFamily(ps []netip.Prefix) Family {
	fam := Family(0)
	for _, pr := range ps {
		f := Family(4)
		if pr.Addr().Is6() {
			f = 6
		}
		if fam != 0 && f != fam {
			return 0
		}
		fam = f
	}
	return fam
}

// Target option handlers.

func rejectOpt(p *ruleParser, neg bool, v []token) error {
	name, fam, err := parseRejectWith(v[0].s, p.family())
	if err != nil {
		return p.fail(v[0], "%v", err)
	}
	p.r.RejectWith = name
	if fam != 0 && p.r.Family == 0 && p.fam == 0 {
		p.r.Family = fam
	}
	return nil
}

func rejectFinal(p *ruleParser) error {
	if p.r.RejectWith == "tcp-reset" && (p.r.Proto != 6 || p.r.ProtoNeg) {
		return &ParseError{Pos: p.r.Pos, Token: "tcp-reset", Msg: "--reject-with tcp-reset needs -p tcp (iptables refuses it otherwise)"}
	}
	return nil
}

// maxLogPrefix is the longest --log-prefix (xt_LOG: 29 characters).
const maxLogPrefix = 29

func logPrefixOpt(p *ruleParser, neg bool, v []token) error {
	// iptables cuts a longer prefix to 29 characters, and so does dpfw.
	p.r.LogPrefix = v[0].s[:min(len(v[0].s), maxLogPrefix)]
	return nil
}

func logLevelOpt(p *ruleParser, neg bool, v []token) error {
	n, err := parseLogLevel(v[0].s)
	if err != nil {
		return p.fail(v[0], "%v", err)
	}
	p.r.LogLevel = int8(n)
	return nil
}

func logFlagOpt(f LogFlags) func(p *ruleParser, neg bool, v []token) error {
	return func(p *ruleParser, neg bool, v []token) error {
		p.r.LogFlags |= f
		return nil
	}
}
