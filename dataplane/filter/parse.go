package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agnivade/levenshtein"
)

// ParseError is a rule syntax error: where, the bad token, and a fix.
type ParseError struct {
	Pos   Pos
	Token string
	Msg   string
}

func (e *ParseError) Error() string {
	if e.Token != "" {
		return fmt.Sprintf("%s: %s: %s", e.Pos, quoteToken(e.Token), e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// maxQuoted is how much of a bad token an error quotes: a megabyte-long
// token is not echoed whole.
const maxQuoted = 40

func quoteToken(t string) string {
	if len(t) <= maxQuoted {
		return strconv.Quote(t)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(t[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(t[:cut]), len(t))
}

// Limits bound what the parser accepts, so that no input can make it (or
// the compiler after it) take unbounded time or memory. They are checked
// while parsing, before any compile work.
type Limits struct {
	// MaxDecisions bounds rules plus chains (the compiled rule set names
	// each by a 16-bit id).
	MaxDecisions int
	// MaxLine bounds one line in bytes.
	MaxLine int
	// MaxErrors stops parsing after this many errors.
	MaxErrors int
}

// DefaultLimits are the parser's bounds: the rule set's structural limit,
// lines far longer than any real rule (iptables-save prints rules of a few
// hundred bytes), and enough errors to fix a file in a few rounds.
var DefaultLimits = Limits{MaxDecisions: MaxDecisions, MaxLine: 64 << 10, MaxErrors: 100}

// IsEmptyText reports whether text holds no rule, policy or table: only
// blank lines and comments.
func IsEmptyText(text string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

// ParseIptables parses iptables syntax: an iptables-save / ip6tables-save
// file (*filter, :CHAIN POLICY [p:b], -A …, COMMIT), or plain lines of rule
// commands ("-A INPUT …", "iptables -A INPUT …", "$ sudo iptables -P INPUT
// DROP"). Every error is returned (each names file:line:column, the bad
// token and a fix); on any error the result must not be used.
func ParseIptables(file, text string) (*Ruleset, error) {
	return ParseIptablesSets(file, text, nil)
}

// ParseIptablesSets is ParseIptables with named address sets for -m set.
func ParseIptablesSets(file, text string, sets map[string][]netip.Prefix) (*Ruleset, error) {
	return ParseIptablesLimits(file, text, sets, DefaultLimits)
}

// saveState follows the table structure of an iptables-save file as
// iptables-restore does: every table opens with *NAME and ends with
// COMMIT; chain lines and rules stand inside a table.
type saveState struct {
	table    string // the open table ("" between tables)
	tablePos Pos
	isSave   bool // the text has table headers: it is a save file
}

// ParseIptablesLimits is ParseIptablesSets with explicit bounds.
func ParseIptablesLimits(file, text string, sets map[string][]netip.Prefix, lim Limits) (*Ruleset, error) {
	rs := NewRuleset()
	rs.Sets = sets
	var errs []error
	st := saveState{isSave: hasTableHeader(text)}
	lineNo := 0
	for line := range strings.SplitSeq(text, "\n") {
		lineNo++
		if len(errs) >= lim.MaxErrors {
			errs = append(errs, fmt.Errorf("%s: stopped after %d errors", Pos{File: file, Line: lineNo}, lim.MaxErrors))
			break
		}
		pos := Pos{File: file, Line: lineNo}
		if err := checkLine(pos, line, lim); err != nil {
			errs = append(errs, err)
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		skip, err := st.structure(rs, pos, trimmed)
		if err != nil {
			errs = append(errs, err)
		}
		if !skip {
			if err := parseCommand(rs, pos, line); err != nil {
				errs = append(errs, err)
			}
		}
		if n := rs.nrules + len(rs.Chains); n > lim.MaxDecisions {
			errs = append(errs, &ParseError{Pos: pos, Msg: fmt.Sprintf("more than %d rules and chains: dpfw's limit (each has a 16-bit id in the compiled rule set), checked before compiling; split the rule set, or match many addresses with one rule and -m set", lim.MaxDecisions)})
			break
		}
	}
	if st.table != "" && len(errs) < lim.MaxErrors {
		errs = append(errs, &ParseError{Pos: st.tablePos, Token: "*" + st.table, Msg: "the table is not committed: the text ends before its COMMIT line; iptables-restore refuses this too, and dpfw refuses it so that a truncated or half-written file never goes live"})
	}
	if len(errs) == 0 {
		if err := rs.check(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// checkLine applies the per-line bounds: length and valid UTF-8 (rule
// text reaches metric labels and JSON, which need valid UTF-8).
func checkLine(pos Pos, line string, lim Limits) error {
	if len(line) > lim.MaxLine {
		return &ParseError{Pos: pos, Token: line, Msg: fmt.Sprintf("the line is longer than %d bytes; no rule is this long: is this a rules file?", lim.MaxLine)}
	}
	if !utf8.ValidString(line) {
		col := 1
		for i, r := range line {
			if r == utf8.RuneError {
				col = i + 1
				break
			}
		}
		return &ParseError{Pos: Pos{File: pos.File, Line: pos.Line, Col: col}, Msg: "not valid UTF-8 (rule text reaches metric labels and JSON): save the file as UTF-8 (iconv -f latin1 -t utf8) or remove the byte"}
	}
	return nil
}

func hasTableHeader(text string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "*") {
			return true
		}
	}
	return false
}

// structure handles table headers, COMMIT and chain lines, and reports
// whether the line is done with (skip) or is a command to parse.
func (st *saveState) structure(rs *Ruleset, pos Pos, trimmed string) (skip bool, err error) {
	switch {
	case strings.HasPrefix(trimmed, "*"):
		if st.table != "" {
			err = &ParseError{Pos: pos, Token: trimmed, Msg: fmt.Sprintf("table %s (line %d) is not committed: add COMMIT before this table", st.table, st.tablePos.Line)}
		}
		st.table, st.tablePos = trimmed[1:], pos
		if st.table != "filter" {
			return true, errors.Join(err, &ParseError{Pos: pos, Token: trimmed, Msg: "dpfw implements the filter table only; remove this table's section (up to its COMMIT) or move its rules to *filter"})
		}
		return true, err
	case trimmed == "COMMIT":
		if st.table == "" {
			return true, &ParseError{Pos: pos, Token: trimmed, Msg: "COMMIT without a table: a table starts with *filter"}
		}
		st.table = ""
		return true, nil
	case st.table != "" && st.table != "filter":
		// Inside a refused table: its lines are not dpfw's to judge (one
		// error for the table, not one per line).
		return true, nil
	case st.isSave && st.table == "":
		return true, &ParseError{Pos: pos, Token: firstWord(trimmed), Msg: "outside a table: in an iptables-save file every chain line and rule stands between *filter and COMMIT"}
	case strings.HasPrefix(trimmed, ":"):
		if !st.isSave {
			return true, &ParseError{Pos: pos, Token: firstWord(trimmed), Msg: "a chain line (:CHAIN POLICY) belongs in an iptables-save file, after a *filter header; in a script write -P CHAIN POLICY or -N CHAIN"}
		}
		return true, parseChainDecl(rs, pos, trimmed)
	}
	return false, nil
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

// parseChainDecl handles ":NAME POLICY [packets:bytes]" of iptables-save.
func parseChainDecl(rs *Ruleset, pos Pos, s string) error {
	f := strings.Fields(s[1:])
	if len(f) < 2 {
		return &ParseError{Pos: pos, Token: s, Msg: "want :CHAIN POLICY [packets:bytes], e.g. :INPUT DROP [0:0]"}
	}
	name, pol := f[0], f[1]
	if IsBuiltin(name) {
		if pol != "ACCEPT" && pol != "DROP" {
			return &ParseError{Pos: pos, Token: pol, Msg: "a built-in chain's policy is ACCEPT or DROP"}
		}
		rs.Chains[name].Policy = pol
		rs.Chains[name].Pos = pos
		return nil
	}
	if pol != "-" {
		return &ParseError{Pos: pos, Token: pol, Msg: "a user chain has no policy: write :" + name + " - [0:0]"}
	}
	return rs.newChain(pos, name)
}

func (rs *Ruleset) newChain(pos Pos, name string) error {
	if _, ok := rs.Chains[name]; ok {
		if IsBuiltin(name) {
			return &ParseError{Pos: pos, Token: name, Msg: "built-in chain; it always exists"}
		}
		return &ParseError{Pos: pos, Token: name, Msg: "chain already exists"}
	}
	if err := checkChainName(name); err != nil {
		return &ParseError{Pos: pos, Token: name, Msg: err.Error()}
	}
	rs.Chains[name] = &Chain{Name: name, Pos: pos}
	rs.Order = append(rs.Order, name)
	return nil
}

func checkChainName(name string) error {
	if name == "" || len(name) > 28 || strings.HasPrefix(name, "-") || strings.ContainsAny(name, " \t!") {
		return errors.New("a chain name has 1 to 28 characters, no spaces or '!', and does not start with '-'")
	}
	switch strings.ToUpper(name) {
	case "ACCEPT", "DROP", "REJECT", "LOG", "RETURN", "QUEUE":
		return errors.New("a chain cannot be named like a target")
	}
	return nil
}

// token is one shell word with its column.
type token struct {
	s   string
	col int
}

// tokenize splits a line into shell-like words, honouring "…" and '…'.
func tokenize(line string) ([]token, error) {
	var out []token
	i := 0
	for i < len(line) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		start := i
		var b strings.Builder
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			if c := line[i]; c == '"' || c == '\'' {
				end := strings.IndexByte(line[i+1:], c)
				if end < 0 {
					return nil, &ParseError{Pos: Pos{Col: i + 1}, Token: line[i:], Msg: "unterminated quote"}
				}
				b.WriteString(line[i+1 : i+1+end])
				i += end + 2
				continue
			}
			b.WriteByte(line[i])
			i++
		}
		out = append(out, token{b.String(), start + 1})
	}
	return out, nil
}

// knownOptions lists every option dpfw accepts, for suggestions.
var knownOptions = []string{
	"-A", "--append", "-I", "--insert", "-N", "--new-chain", "-P", "--policy",
	"-p", "--protocol", "-s", "--source", "-d", "--destination", "-i", "--in-interface", "-o", "--out-interface",
	"-m", "--match", "-j", "--jump", "-g", "--sport", "--source-port", "--dport", "--destination-port",
	"--sports", "--dports", "--ports", "--state", "--ctstate", "--icmp-type", "--icmpv6-type",
	"--syn", "--tcp-flags", "--comment", "--reject-with", "--log-prefix", "--log-level", "--match-set",
	"--limit", "--limit-burst", "--hashlimit-upto", "--hashlimit-above", "--hashlimit-burst", "--hashlimit-mode",
	"--hashlimit-srcmask", "--hashlimit-dstmask", "--hashlimit-name", "--hashlimit-htable-size",
	"--hashlimit-htable-max", "--hashlimit-htable-expire", "--hashlimit-htable-gcinterval",
}

// modules that dpfw implements for -m.
var modules = map[string]bool{"state": true, "conntrack": true, "multiport": true, "comment": true, "tcp": true, "udp": true, "icmp": true, "icmp6": true, "icmpv6": true, "sctp": true, "set": true, "limit": true, "hashlimit": true}

func mixedFamilies(ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().Is4() != ps[0].Addr().Is4() {
			return true
		}
	}
	return false
}

func nearestName(s string, names []string) string {
	best, bestD := "", 1<<30
	for _, n := range names {
		if d := levenshtein.ComputeDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	if bestD <= 2 {
		return best
	}
	return ""
}

func parseCommand(rs *Ruleset, pos Pos, line string) error {
	toks, err := tokenize(line)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Pos.File, pe.Pos.Line = pos.File, pos.Line
		}
		return err
	}
	at := func(t token) Pos { return Pos{File: pos.File, Line: pos.Line, Col: t.col} }
	fail := func(t token, format string, a ...any) error {
		return &ParseError{Pos: at(t), Token: t.s, Msg: fmt.Sprintf(format, a...)}
	}
	// Shell prompt, sudo, and the command name.
	fam := Family(0)
	for len(toks) > 0 {
		switch toks[0].s {
		case "$", "#", "sudo":
			toks = toks[1:]
			continue
		case "iptables", "iptables-legacy", "iptables-nft":
			fam, toks = 4, toks[1:]
			continue
		case "ip6tables", "ip6tables-legacy", "ip6tables-nft":
			fam, toks = 6, toks[1:]
			continue
		}
		break
	}
	if len(toks) == 0 {
		return nil
	}
	first := toks[0]
	if !strings.HasPrefix(first.s, "-") {
		if ch, ok := rs.Chains[first.s]; ok || IsBuiltin(strings.ToUpper(first.s)) {
			name := first.s
			if ch == nil {
				name = strings.ToUpper(first.s)
			}
			return fail(first, "expected a command before the chain name; did you mean -A %s?", name)
		}
		return fail(first, "expected a command: -A CHAIN (append), -I CHAIN (insert), -N CHAIN (new chain) or -P CHAIN POLICY")
	}
	cmd := first.s
	if len(toks) < 2 {
		return fail(first, "missing the chain name after %s", cmd)
	}
	chainTok := toks[1]
	switch cmd {
	case "-N", "--new-chain":
		if len(toks) > 2 {
			return fail(toks[2], "-N takes only a chain name")
		}
		return rs.newChain(at(chainTok), chainTok.s)
	case "-P", "--policy":
		if len(toks) != 3 {
			return fail(chainTok, "want -P CHAIN ACCEPT|DROP")
		}
		ch, err := rs.chain(at(chainTok), chainTok.s)
		if err != nil {
			return err
		}
		if !IsBuiltin(ch.Name) {
			return fail(chainTok, "only built-in chains (INPUT, FORWARD, OUTPUT) have a policy")
		}
		if p := toks[2].s; p != "ACCEPT" && p != "DROP" {
			return fail(toks[2], "a policy is ACCEPT or DROP")
		}
		ch.Policy = toks[2].s
		return nil
	case "-A", "--append", "-I", "--insert":
	default:
		if s := nearestOption(cmd); s != "" && s != cmd {
			return fail(first, "unknown command; did you mean %s?", s)
		}
		return fail(first, "unknown command; dpfw rule files use -A, -I, -N and -P")
	}
	ch, err := rs.chain(at(chainTok), chainTok.s)
	if err != nil {
		return err
	}
	r := Rule{Pos: at(first), Chain: ch.Name, Family: fam, Proto: -1, ICMPType: -1, ICMPCode: -1}
	insertAt := -1
	rest := toks[2:]
	if (cmd == "-I" || cmd == "--insert") && len(rest) > 0 {
		if n, err := strconv.Atoi(rest[0].s); err == nil {
			if n < 1 || n > len(ch.Rules)+1 {
				return fail(rest[0], "rule number out of range: the chain has %d rules", len(ch.Rules))
			}
			insertAt, rest = n-1, rest[1:]
		} else {
			insertAt = 0
		}
	} else if cmd == "-I" || cmd == "--insert" {
		insertAt = 0
	}
	if err := parseMatches(&r, rest, at, fail, rs.Sets); err != nil {
		return err
	}
	if insertAt >= 0 {
		ch.Rules = slices.Insert(ch.Rules, insertAt, r)
	} else {
		ch.Rules = append(ch.Rules, r)
	}
	rs.nrules++
	return nil
}

// chain finds a chain, with a case hint when the name exists in other case.
func (rs *Ruleset) chain(pos Pos, name string) (*Chain, error) {
	if ch, ok := rs.Chains[name]; ok {
		return ch, nil
	}
	for n := range rs.Chains {
		if strings.EqualFold(n, name) {
			return nil, &ParseError{Pos: pos, Token: name, Msg: fmt.Sprintf("no chain %q; chains are case-sensitive: %s?", name, n)}
		}
	}
	return nil, &ParseError{Pos: pos, Token: name, Msg: fmt.Sprintf("no chain %q; built-in chains are INPUT, FORWARD and OUTPUT, user chains need -N %s first", name, name)}
}

func nearestOption(s string) string {
	best, bestD := "", 1<<30
	for _, o := range knownOptions {
		// "-dport" is "--dport" with one dash missing: prefer that.
		if "-"+s == o {
			return o
		}
		if d := levenshtein.ComputeDistance(s, o); d < bestD {
			best, bestD = o, d
		}
	}
	if bestD <= 2 {
		return best
	}
	return ""
}

func parseMatches(r *Rule, toks []token, at func(token) Pos, fail func(token, string, ...any) error, sets map[string][]netip.Prefix) error {
	mods := map[string]bool{}
	neg := false
	var negTok token
	takeNeg := func() bool { n := neg; neg = false; return n }
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.s == "!" {
			if neg {
				return fail(t, "double negation")
			}
			neg, negTok = true, t
			continue
		}
		arg := func() (token, error) {
			if i+1 >= len(toks) || (strings.HasPrefix(toks[i+1].s, "-") && len(toks[i+1].s) > 1 && !isNumber(toks[i+1].s)) {
				return token{}, fail(t, "missing the value of %s", t.s)
			}
			i++
			return toks[i], nil
		}
		switch t.s {
		case "-p", "--protocol":
			v, err := arg()
			if err != nil {
				return err
			}
			p, ok := parseProto(v.s)
			if !ok {
				return fail(v, "unknown protocol; want tcp, udp, icmp, icmpv6, sctp, all or a number 0-255")
			}
			r.Proto, r.ProtoNeg = p, takeNeg()
			if p == 58 {
				r.Family = setFamily(r.Family, 6)
			} else if p == 1 {
				r.Family = setFamily(r.Family, 4)
			}
		case "-s", "--source", "-d", "--destination":
			v, err := arg()
			if err != nil {
				return err
			}
			ps, fam, err := parseAddrs(v.s)
			if err != nil {
				return fail(v, "%v", err)
			}
			if r.Family != 0 && fam != r.Family {
				return fail(v, "an IPv%d address in an IPv%d rule", fam, r.Family)
			}
			r.Family = fam
			if t.s == "-s" || t.s == "--source" {
				r.Src, r.SrcNeg = ps, takeNeg()
			} else {
				r.Dst, r.DstNeg = ps, takeNeg()
			}
		case "-i", "--in-interface", "-o", "--out-interface":
			v, err := arg()
			if err != nil {
				return err
			}
			if t.s == "-i" || t.s == "--in-interface" {
				r.In, r.InNeg = v.s, takeNeg()
			} else {
				r.Out, r.OutNeg = v.s, takeNeg()
			}
		case "-m", "--match":
			v, err := arg()
			if err != nil {
				return err
			}
			if !modules[v.s] {
				if v.s == "connlimit" {
					return fail(v, "connlimit is not supported; to cap new connections per source use -m hashlimit --hashlimit-above RATE --hashlimit-mode srcip with -m conntrack --ctstate NEW")
				}
				return fail(v, "unknown or unsupported match module; dpfw has state, conntrack, multiport, set, comment, limit, hashlimit, tcp, udp, icmp, icmp6")
			}
			if (v.s == "limit" || v.s == "hashlimit") && r.Limit != nil {
				return fail(v, "one rate limit per rule: -m limit and -m hashlimit cannot be combined or repeated")
			}
			switch v.s {
			case "limit":
				r.Limit = &RateLimit{Rate: 3, Per: 3600e9, Burst: 5, SrcMask: -1, DstMask: -1} // iptables' defaults
			case "hashlimit":
				r.Limit = &RateLimit{Hash: true, Burst: 5, SrcMask: -1, DstMask: -1, Size: DefaultLimitSize}
			}
			mods[v.s] = true
		case "--sport", "--source-port", "--dport", "--destination-port":
			if r.Proto != 6 && r.Proto != 17 && r.Proto != 132 {
				return fail(t, "%s needs -p tcp, -p udp or -p sctp before it", t.s)
			}
			v, err := arg()
			if err != nil {
				return err
			}
			pr, err := parsePortRange(v.s)
			if err != nil {
				return fail(v, "%v", err)
			}
			if t.s == "--sport" || t.s == "--source-port" {
				r.SPorts, r.SPortNeg = []PortRange{pr}, takeNeg()
			} else {
				r.DPorts, r.DPortNeg = []PortRange{pr}, takeNeg()
			}
		case "--sports", "--dports", "--ports":
			if !mods["multiport"] {
				return fail(t, "%s needs -m multiport before it", t.s)
			}
			if r.Proto != 6 && r.Proto != 17 && r.Proto != 132 {
				return fail(t, "-m multiport needs -p tcp, -p udp or -p sctp")
			}
			v, err := arg()
			if err != nil {
				return err
			}
			var prs []PortRange
			for _, p := range strings.Split(v.s, ",") {
				pr, err := parsePortRange(p)
				if err != nil {
					return fail(v, "%v", err)
				}
				prs = append(prs, pr)
			}
			if len(prs) > 15 {
				return fail(v, "multiport takes at most 15 ports (as iptables); use several rules or a range")
			}
			n := takeNeg()
			switch t.s {
			case "--sports":
				r.SPorts, r.SPortNeg = prs, n
			case "--dports":
				r.DPorts, r.DPortNeg = prs, n
			default:
				return fail(t, "--ports (source or destination) is not supported; write two rules with --sports and --dports")
			}
		case "--state", "--ctstate":
			if t.s == "--state" && !mods["state"] {
				return fail(t, "--state needs -m state before it (or use -m conntrack --ctstate)")
			}
			if t.s == "--ctstate" && !mods["conntrack"] {
				return fail(t, "--ctstate needs -m conntrack before it")
			}
			v, err := arg()
			if err != nil {
				return err
			}
			var m uint8
			for _, s := range strings.Split(v.s, ",") {
				b, ok := stateBits[strings.ToUpper(s)]
				if !ok {
					return fail(v, "unknown state %q; want NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED, comma-separated", s)
				}
				m |= b
			}
			r.States, r.StateNeg = m, takeNeg()
		case "--icmp-type", "--icmpv6-type":
			v, err := arg()
			if err != nil {
				return err
			}
			v6 := t.s == "--icmpv6-type"
			if (v6 && r.Proto != 58) || (!v6 && r.Proto != 1) {
				want := "-p icmp"
				if v6 {
					want = "-p icmpv6"
				}
				return fail(t, "%s needs %s before it", t.s, want)
			}
			typ, code, err := parseICMPType(v.s, v6)
			if err != nil {
				return fail(v, "%v", err)
			}
			r.ICMPType, r.ICMPCode, r.ICMPNeg = typ, code, takeNeg()
		case "--syn":
			if r.Proto != 6 {
				return fail(t, "--syn needs -p tcp before it")
			}
			r.TCPFlags, r.TCPFlagsMask, r.TCPFlagsComp, r.TCPFlagsNeg = true, 0x17, 0x02, takeNeg()
		case "--tcp-flags":
			if r.Proto != 6 {
				return fail(t, "--tcp-flags needs -p tcp before it")
			}
			if i+2 >= len(toks) {
				return fail(t, "want --tcp-flags MASK COMP, e.g. --tcp-flags SYN,ACK,FIN,RST SYN")
			}
			mask, err := parseFlags(toks[i+1].s)
			if err != nil {
				return fail(toks[i+1], "%v", err)
			}
			comp, err := parseFlags(toks[i+2].s)
			if err != nil {
				return fail(toks[i+2], "%v", err)
			}
			i += 2
			r.TCPFlags, r.TCPFlagsMask, r.TCPFlagsComp, r.TCPFlagsNeg = true, mask, comp, takeNeg()
		case "--match-set":
			if !mods["set"] {
				return fail(t, "--match-set needs -m set before it")
			}
			if i+2 >= len(toks) {
				return fail(t, "want --match-set NAME src|dst")
			}
			name, dir := toks[i+1], toks[i+2]
			i += 2
			ps, ok := sets[name.s]
			if !ok {
				var known []string
				for n := range sets {
					known = append(known, n)
				}
				msg := "no set named %q; define it under rules.sets in the config"
				if best := nearestName(name.s, known); best != "" {
					msg += fmt.Sprintf("; did you mean %q?", best)
				}
				return fail(name, msg, name.s)
			}
			fam := Family(0)
			for _, p := range ps {
				f := Family(4)
				if p.Addr().Is6() {
					f = 6
				}
				if fam == 0 {
					fam = f
				} else if fam != f {
					fam = 0
					break
				}
			}
			n := takeNeg()
			switch dir.s {
			case "src":
				r.Src, r.SrcNeg, r.SrcSet = ps, n, name.s
			case "dst":
				r.Dst, r.DstNeg, r.DstSet = ps, n, name.s
			default:
				return fail(dir, "want src or dst (dpfw sets hold addresses)")
			}
			if fam != 0 && r.Family == 0 && !mixedFamilies(ps) {
				r.Family = fam
			}
		case "--limit", "--limit-burst", "--hashlimit-upto", "--hashlimit-above", "--hashlimit", "--hashlimit-burst",
			"--hashlimit-mode", "--hashlimit-srcmask", "--hashlimit-dstmask", "--hashlimit-name", "--hashlimit-htable-size",
			"--hashlimit-htable-max", "--hashlimit-htable-expire", "--hashlimit-htable-gcinterval":
			if neg {
				return fail(negTok, "%s cannot be negated; use --hashlimit-above instead of ! --hashlimit-upto", t.s)
			}
			v, err := arg()
			if err != nil {
				return err
			}
			if err := parseLimitOption(r, mods, t.s, v.s); err != nil {
				at := t
				if errors.Is(err, errBadValue) {
					at = v
				}
				return fail(at, "%v", err)
			}
		case "--comment":
			if !mods["comment"] {
				return fail(t, "--comment needs -m comment before it")
			}
			v, err := arg()
			if err != nil {
				return err
			}
			if len(v.s) > 256 {
				return fail(v, "a comment has at most 256 characters")
			}
			r.Comment = v.s
		case "-j", "--jump", "-g", "--goto":
			if t.s == "-g" || t.s == "--goto" {
				return fail(t, "--goto is not supported; use -j CHAIN")
			}
			v, err := arg()
			if err != nil {
				return err
			}
			r.Target = v.s
		case "--reject-with":
			v, err := arg()
			if err != nil {
				return err
			}
			if r.Target != "REJECT" {
				return fail(t, "--reject-with goes after -j REJECT")
			}
			if v.s == "tcp-reset" && r.Proto != 6 {
				return fail(v, "tcp-reset needs -p tcp (iptables refuses it otherwise)")
			}
			if !validRejectWith(v.s) {
				return fail(v, "want tcp-reset, icmp-port-unreachable, icmp-host-prohibited, icmp-admin-prohibited, icmp6-port-unreachable or icmp6-adm-prohibited")
			}
			r.RejectWith = v.s
		case "--log-prefix", "--log-level":
			v, err := arg()
			if err != nil {
				return err
			}
			if r.Target != "LOG" {
				return fail(t, "%s goes after -j LOG", t.s)
			}
			if t.s == "--log-prefix" {
				r.LogPrefix = v.s
			}
		default:
			if s := nearestOption(t.s); s != "" {
				return fail(t, "unknown option; did you mean %s?", s)
			}
			if strings.HasPrefix(t.s, "-") {
				return fail(t, "unknown option")
			}
			return fail(t, "unexpected value; options start with '-' (see iptables(8))")
		}
	}
	if neg {
		return fail(negTok, "'!' must be followed by a match option")
	}
	if r.Target == "" {
		return &ParseError{Pos: r.Pos, Msg: "the rule has no target: add -j ACCEPT, DROP, REJECT, LOG, RETURN or a user chain"}
	}
	if l := r.Limit; l != nil && l.Hash {
		switch {
		case l.Rate == 0:
			return &ParseError{Pos: r.Pos, Token: "hashlimit", Msg: "-m hashlimit needs --hashlimit-upto RATE or --hashlimit-above RATE"}
		case l.Name == "":
			return &ParseError{Pos: r.Pos, Token: "hashlimit", Msg: "-m hashlimit needs --hashlimit-name NAME (as iptables)"}
		case r.Family == 4 && (l.SrcMask > 32 || l.DstMask > 32):
			return &ParseError{Pos: r.Pos, Token: "hashlimit", Msg: "an IPv4 rule's --hashlimit-srcmask/--hashlimit-dstmask is at most 32"}
		}
	}
	return nil
}

// errBadValue marks errors about an option's value (not the option).
var errBadValue = errors.New("bad value")

type valueError struct{ msg string }

func (e valueError) Error() string        { return e.msg }
func (e valueError) Is(target error) bool { return target == errBadValue }

// parseLimitOption parses one -m limit / -m hashlimit option.
func parseLimitOption(r *Rule, mods map[string]bool, opt, val string) error {
	hash := strings.HasPrefix(opt, "--hashlimit")
	if hash && !mods["hashlimit"] {
		return fmt.Errorf("%s needs -m hashlimit before it", opt)
	}
	if !hash && !mods["limit"] {
		return fmt.Errorf("%s needs -m limit before it", opt)
	}
	l := r.Limit
	num := func(lo, hi int) (int, error) {
		n, err := strconv.Atoi(val)
		if err != nil || n < lo || n > hi {
			return 0, valueError{fmt.Sprintf("want a number %d-%d for %s", lo, hi, opt)}
		}
		return n, nil
	}
	var err error
	switch opt {
	case "--limit", "--hashlimit-upto", "--hashlimit-above", "--hashlimit":
		l.Rate, l.Per, err = parseRate(val)
		if err != nil {
			return valueError{err.Error()}
		}
		l.Above = opt == "--hashlimit-above"
	case "--limit-burst", "--hashlimit-burst":
		var n int
		n, err = num(1, 10000)
		l.Burst = uint32(n)
	case "--hashlimit-mode":
		l.Mode = 0
		for _, f := range strings.Split(val, ",") {
			found := false
			for _, m := range limitModeNames {
				if f == m.name {
					l.Mode |= m.bit
					found = true
				}
			}
			if !found {
				return valueError{fmt.Sprintf("unknown --hashlimit-mode field %q: want srcip, dstip, srcport or dstport, comma-separated", f)}
			}
		}
	case "--hashlimit-srcmask":
		l.SrcMask, err = num(0, 128)
	case "--hashlimit-dstmask":
		l.DstMask, err = num(0, 128)
	case "--hashlimit-name":
		if len(val) > 64 {
			return valueError{"a --hashlimit-name has at most 64 characters"}
		}
		l.Name = val
	case "--hashlimit-htable-size", "--hashlimit-htable-max":
		l.Size, err = num(1, MaxLimitSize)
	case "--hashlimit-htable-expire", "--hashlimit-htable-gcinterval":
		// dpfw needs neither: a bucket that has refilled is reused in
		// place, so there is nothing to expire or collect. Validated and
		// accepted so iptables-save output loads unchanged.
		_, err = num(1, 1<<30)
	}
	return err
}

func isNumber(s string) bool { _, err := strconv.Atoi(s); return err == nil }

func setFamily(f, want Family) Family {
	if f == 0 {
		return want
	}
	return f
}

func parseProto(s string) (int, bool) {
	if p, ok := protoNames[strings.ToLower(s)]; ok {
		return p, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return 0, false
	}
	if n == 0 {
		return -1, true // iptables: 0 means all
	}
	return n, true
}

func parseAddrs(s string) ([]netip.Prefix, Family, error) {
	var out []netip.Prefix
	var fam Family
	for _, a := range strings.Split(s, ",") {
		var p netip.Prefix
		var err error
		if strings.Contains(a, "/") {
			p, err = netip.ParsePrefix(a)
			if err != nil {
				// iptables also accepts dotted masks: 10.0.0.0/255.0.0.0
				if addr, mask, ok := strings.Cut(a, "/"); ok {
					if m, err2 := netip.ParseAddr(mask); err2 == nil && m.Is4() {
						bits := maskBits(m.As4())
						if bits >= 0 {
							p, err = netip.ParsePrefix(fmt.Sprintf("%s/%d", addr, bits))
						}
					}
				}
			}
		} else {
			var ad netip.Addr
			ad, err = netip.ParseAddr(a)
			if err == nil {
				p = netip.PrefixFrom(ad, ad.BitLen())
			}
		}
		if err != nil {
			return nil, 0, fmt.Errorf("not an IP address or CIDR (host names are not resolved): want e.g. 198.18.0.1, 198.18.0.0/15 or 2001:db8::/32")
		}
		p = p.Masked()
		f := Family(4)
		if p.Addr().Is6() {
			f = 6
		}
		if fam != 0 && f != fam {
			return nil, 0, fmt.Errorf("mixes IPv4 and IPv6 addresses; write one rule per family")
		}
		fam = f
		out = append(out, p)
	}
	return out, fam, nil
}

func maskBits(m [4]byte) int {
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return -1
	}
	return n
}

var servicePorts = map[string]uint16{"ssh": 22, "ftp": 21, "ftp-data": 20, "http": 80, "https": 443, "domain": 53, "smtp": 25, "telnet": 23, "ntp": 123}

func parsePort(s string) (uint16, error) {
	if p, ok := servicePorts[s]; ok {
		return p, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("not a port: want a number 0-65535, a range 1024:65535, or a service name (ssh, ftp, http, …)")
	}
	return uint16(n), nil
}

func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		p, err := parsePort(s)
		return PortRange{p, p}, err
	}
	l, h := uint16(0), uint16(65535)
	var err error
	if lo != "" {
		if l, err = parsePort(lo); err != nil {
			return PortRange{}, err
		}
	}
	if hi != "" {
		if h, err = parsePort(hi); err != nil {
			return PortRange{}, err
		}
	}
	if l > h {
		return PortRange{}, fmt.Errorf("range %d:%d is reversed; write %d:%d", l, h, h, l)
	}
	return PortRange{l, h}, nil
}

func parseFlags(s string) (uint8, error) {
	switch s {
	case "ALL":
		return 0xff, nil
	case "NONE":
		return 0, nil
	}
	var m uint8
	for _, f := range strings.Split(s, ",") {
		found := false
		for _, fb := range tcpFlagBits {
			if strings.EqualFold(f, fb.name) {
				m |= fb.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown TCP flag %q; want SYN, ACK, FIN, RST, URG, PSH, ECE, CWR, ALL or NONE", f)
		}
	}
	return m, nil
}

var icmpTypes = map[string][2]int{
	"echo-reply": {0, -1}, "pong": {0, -1}, "destination-unreachable": {3, -1}, "network-unreachable": {3, 0},
	"host-unreachable": {3, 1}, "protocol-unreachable": {3, 2}, "port-unreachable": {3, 3},
	"fragmentation-needed": {3, 4}, "source-quench": {4, -1}, "redirect": {5, -1}, "echo-request": {8, -1},
	"ping": {8, -1}, "time-exceeded": {11, -1}, "ttl-exceeded": {11, 0}, "parameter-problem": {12, -1},
	"timestamp-request": {13, -1}, "timestamp-reply": {14, -1}, "address-mask-request": {17, -1}, "address-mask-reply": {18, -1},
}

var icmp6Types = map[string][2]int{
	"destination-unreachable": {1, -1}, "no-route": {1, 0}, "communication-prohibited": {1, 1},
	"address-unreachable": {1, 3}, "port-unreachable": {1, 4}, "packet-too-big": {2, -1},
	"time-exceeded": {3, -1}, "ttl-exceeded": {3, 0}, "parameter-problem": {4, -1},
	"echo-request": {128, -1}, "ping": {128, -1}, "echo-reply": {129, -1}, "pong": {129, -1},
	"router-solicitation": {133, -1}, "router-advertisement": {134, -1},
	"neighbour-solicitation": {135, -1}, "neighbor-solicitation": {135, -1},
	"neighbour-advertisement": {136, -1}, "neighbor-advertisement": {136, -1}, "redirect": {137, -1},
}

func parseICMPType(s string, v6 bool) (int, int, error) {
	names := icmpTypes
	if v6 {
		names = icmp6Types
	}
	if tc, ok := names[strings.ToLower(s)]; ok {
		return tc[0], tc[1], nil
	}
	t, c, hasCode := strings.Cut(s, "/")
	typ, err := strconv.Atoi(t)
	if err != nil || typ < 0 || typ > 255 {
		return 0, 0, fmt.Errorf("unknown ICMP type: want a name (echo-request, destination-unreachable, …) or TYPE[/CODE] with numbers 0-255")
	}
	code := -1
	if hasCode {
		code, err = strconv.Atoi(c)
		if err != nil || code < 0 || code > 255 {
			return 0, 0, fmt.Errorf("bad ICMP code: want 0-255")
		}
	}
	return typ, code, nil
}

func validRejectWith(s string) bool {
	switch s {
	case "tcp-reset", "icmp-port-unreachable", "icmp-host-unreachable", "icmp-net-unreachable", "icmp-proto-unreachable",
		"icmp-host-prohibited", "icmp-net-prohibited", "icmp-admin-prohibited",
		"icmp6-port-unreachable", "icmp6-adm-prohibited", "icmp6-no-route", "icmp6-addr-unreachable":
		return true
	}
	return false
}

// check validates targets and jumps after every chain is known: jump targets
// exist, no chain jumps to itself through a loop, RETURN is not used where it
// has no caller... (iptables allows RETURN in built-ins: it applies the policy).
func (rs *Ruleset) check() error {
	var errs []error
	for _, name := range rs.Order {
		ch := rs.Chains[name]
		for i := range ch.Rules {
			r := &ch.Rules[i]
			switch r.Target {
			case "ACCEPT", "DROP", "REJECT", "LOG", "RETURN":
				continue
			}
			if _, ok := rs.Chains[r.Target]; ok {
				if IsBuiltin(r.Target) {
					errs = append(errs, &ParseError{Pos: r.Pos, Token: r.Target, Msg: "cannot jump to a built-in chain"})
				}
				continue
			}
			msg := "unknown target; want ACCEPT, DROP, REJECT, LOG, RETURN or a chain created with -N"
			for _, t := range []string{"ACCEPT", "DROP", "REJECT", "LOG", "RETURN"} {
				if strings.EqualFold(t, r.Target) {
					msg = "targets are upper case: " + t + "?"
				}
			}
			for n := range rs.Chains {
				if strings.EqualFold(n, r.Target) {
					msg = "chains are case-sensitive: " + n + "?"
				}
			}
			errs = append(errs, &ParseError{Pos: r.Pos, Token: r.Target, Msg: msg})
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Loops: depth-first search over jumps.
	state := map[string]int{}
	var visit func(string, []string) error
	visit = func(n string, path []string) error {
		switch state[n] {
		case 1:
			return &ParseError{Pos: rs.Chains[n].Pos, Token: n, Msg: "jump loop: " + strings.Join(append(path, n), " -> ")}
		case 2:
			return nil
		}
		state[n] = 1
		for _, r := range rs.Chains[n].Rules {
			if _, ok := rs.Chains[r.Target]; ok {
				if err := visit(r.Target, append(path, n)); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		return nil
	}
	for _, n := range rs.Order {
		if err := visit(n, nil); err != nil {
			return err
		}
	}
	return nil
}

// AppendArgs parses one rule given as iptables arguments (everything after
// "-A CHAIN") and appends it to chain. Errors carry pos and the bad token.
// Call Check after the last rule.
func (rs *Ruleset) AppendArgs(pos Pos, chain string, args []string) error {
	ch, err := rs.chain(pos, chain)
	if err != nil {
		return err
	}
	toks := make([]token, len(args))
	for i, a := range args {
		toks[i] = token{s: a}
	}
	at := func(token) Pos { return pos }
	fail := func(t token, format string, a ...any) error {
		return &ParseError{Pos: pos, Token: t.s, Msg: fmt.Sprintf(format, a...)}
	}
	r := Rule{Pos: pos, Chain: ch.Name, Proto: -1, ICMPType: -1, ICMPCode: -1}
	if err := parseMatches(&r, toks, at, fail, rs.Sets); err != nil {
		return err
	}
	ch.Rules = append(ch.Rules, r)
	rs.nrules++
	return nil
}

// NewChain adds a user chain.
func (rs *Ruleset) NewChain(pos Pos, name string) error { return rs.newChain(pos, name) }

// SetPolicy sets a built-in chain's policy (ACCEPT or DROP).
func (rs *Ruleset) SetPolicy(pos Pos, chain, policy string) error {
	ch, err := rs.chain(pos, chain)
	if err != nil {
		return err
	}
	if !IsBuiltin(ch.Name) {
		return &ParseError{Pos: pos, Token: chain, Msg: "only built-in chains (INPUT, FORWARD, OUTPUT) have a policy"}
	}
	if policy != "ACCEPT" && policy != "DROP" {
		return &ParseError{Pos: pos, Token: policy, Msg: "a policy is ACCEPT or DROP"}
	}
	ch.Policy = policy
	return nil
}

// Check validates jump targets and loops once every rule is in.
func (rs *Ruleset) Check() error { return rs.check() }
