package rules

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// each by a decision id, which connection entries cache in 20 bits).
	MaxDecisions int
	// MaxLine bounds one line in bytes.
	MaxLine int
	// MaxErrors stops parsing after this many errors.
	MaxErrors int
}

// MaxDecisions bounds a rule set's rules plus chains: the compiled rule set
// names each with a decision id, which connection entries cache in 20 bits
// (conntrack.MaxDecision; dataplane checks the two agree at compile time).
// That is ten times the largest generated rule sets in use (Kubernetes'
// iptables mode at its scale limits writes about 100,000 rules).
const MaxDecisions = 1<<20 - 1

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

// ParseOptions are what a rule set's text is parsed with.
type ParseOptions struct {
	// Family is 4 for an iptables rule set, 6 for an ip6tables one (every
	// rule then applies to that family only, and family-specific options
	// are checked as iptables or ip6tables check them), or 0 for a rule
	// set of both families whose rules' families come from their
	// addresses and protocols.
	Family Family
	// Sets are the named address sets -m set may match.
	Sets map[string][]netip.Prefix
	// Limits bound the input (zero: DefaultLimits).
	Limits Limits
	// Context, if set, abandons the parse when it is done (a reload past
	// its deadline): Parse then returns its cause.
	Context context.Context
}

// Parse parses iptables syntax with opt.
func Parse(file, text string, opt ParseOptions) (*Ruleset, error) {
	if opt.Limits == (Limits{}) {
		opt.Limits = DefaultLimits
	}
	rs := NewRuleset()
	rs.Sets, rs.Family = opt.Sets, opt.Family
	return rs.parseText(file, text, opt.Limits, opt.Context)
}

// ParseIptablesLimits is ParseIptablesSets with explicit bounds.
func ParseIptablesLimits(file, text string, sets map[string][]netip.Prefix, lim Limits) (*Ruleset, error) {
	return Parse(file, text, ParseOptions{Sets: sets, Limits: lim})
}

func (rs *Ruleset) parseText(file, text string, lim Limits, ctx context.Context) (*Ruleset, error) {
	hint, err := checkSize(file, text, len(rs.Chains), lim)
	if err != nil {
		return nil, err
	}
	rs.sizeHint = hint
	defer func() { rs.sizeHint = nil }()
	var errs []error
	st := saveState{isSave: hasTableHeader(text)}
	rs.save = st.isSave
	lineNo := 0
	for line := range strings.SplitSeq(text, "\n") {
		lineNo++
		if ctx != nil && lineNo%4096 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("%s: parsing: %w", Pos{File: file, Line: lineNo}, context.Cause(ctx))
		}
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
			errs = append(errs, tooBig(pos, lim))
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

// tokenize splits a line into words as iptables-restore does: blanks
// separate words, '…' and "…" quote (the quotes are removed), and inside
// double quotes a backslash escapes the character after it, whatever it
// is ("say \"hi\" now", and iptables-save's "it\'s").
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
			c := line[i]
			if c != '"' && c != '\'' {
				b.WriteByte(c)
				i++
				continue
			}
			j := i + 1
			for ; j < len(line) && line[j] != c; j++ {
				if c == '"' && line[j] == '\\' && j+1 < len(line) {
					j++
				}
				b.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, &ParseError{Pos: Pos{Col: i + 1}, Token: line[i:], Msg: "unterminated quote"}
			}
			i = j + 1
		}
		out = append(out, token{b.String(), start + 1})
	}
	return out, nil
}

// knownOptions lists every option, for suggestions (after init has
// filled matchDefs).
var knownOptions = sync.OnceValue(func() []string {
	out := []string{"-A", "--append", "-I", "--insert", "-N", "--new-chain", "-P", "--policy"}
	for o := range genericLong {
		out = append(out, o)
	}
	for o := range genericShort {
		out = append(out, o)
	}
	for _, m := range matchDefs {
		for _, o := range m.opts {
			out = append(out, o.names...)
		}
	}
	for _, t := range targetDefs {
		for _, o := range t.opts {
			out = append(out, o.names...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
})

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

// unsupportedCommands are iptables commands that have no place in a
// rules file.
var unsupportedCommands = map[string]string{
	"-D": "delete", "--delete": "delete", "-R": "replace", "--replace": "replace", "-E": "rename-chain",
	"--rename-chain": "rename-chain", "-X": "delete-chain", "--delete-chain": "delete-chain", "-F": "flush",
	"--flush": "flush", "-Z": "zero", "--zero": "zero", "-L": "list", "--list": "list", "-S": "list-rules",
	"--list-rules": "list-rules", "-C": "check", "--check": "check",
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
	c := &cmdLine{rs: rs, pos: pos}
	toks, c.fam = stripPrefix(toks, rs.Family)
	if len(toks) == 0 {
		return nil
	}
	if rs.Family != 0 && c.fam != rs.Family {
		return c.fail(toks[0], "an ip%stables command in an IPv%d rule set; keep IPv4 and IPv6 rules in their own files", map[Family]string{4: "", 6: "6"}[c.fam], rs.Family)
	}
	first := toks[0]
	if err := c.checkCommand(first, len(toks)); err != nil {
		return err
	}
	run, ok := commands[first.s]
	if !ok {
		if s := nearestOption(first.s); s != "" && s != first.s {
			return c.fail(first, "unknown command; did you mean %s?", s)
		}
		return c.fail(first, "unknown command; dpfw rule files use -A, -I, -N and -P")
	}
	return run(c, toks)
}

// cmdLine is one command line being parsed.
type cmdLine struct {
	rs  *Ruleset
	pos Pos
	fam Family // the command's family (iptables or ip6tables)
}

// at is the position of token t.
func (c *cmdLine) at(t token) Pos { return Pos{File: c.pos.File, Line: c.pos.Line, Col: t.col} }

// fail is an error at token t.
func (c *cmdLine) fail(t token, format string, a ...any) error {
	return &ParseError{Pos: c.at(t), Token: t.s, Msg: fmt.Sprintf(format, a...)}
}

// commands are the rule-file commands, one handler each.
var commands = map[string]func(*cmdLine, []token) error{
	"-N": (*cmdLine).newChain, "--new-chain": (*cmdLine).newChain,
	"-P": (*cmdLine).policy, "--policy": (*cmdLine).policy,
	"-A": (*cmdLine).appendRule, "--append": (*cmdLine).appendRule,
	"-I": (*cmdLine).insertRule, "--insert": (*cmdLine).insertRule,
}

// stripPrefix drops a shell prompt, sudo, the command name (which sets
// the family), and iptables-save -c's [packets:bytes] counters (accepted,
// not kept).
func stripPrefix(toks []token, fam Family) ([]token, Family) {
	for len(toks) > 0 {
		switch t := toks[0].s; {
		case t == "$" || t == "#" || t == "sudo":
		case t == "iptables" || t == "iptables-legacy" || t == "iptables-nft":
			fam = 4
		case t == "ip6tables" || t == "ip6tables-legacy" || t == "ip6tables-nft":
			fam = 6
		case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") && strings.Contains(t, ":"):
		default:
			return toks, fam
		}
		toks = toks[1:]
	}
	return toks, fam
}

// checkCommand refuses what is not a command dpfw runs: a chain name
// without one, the commands that edit a running rule set, -t, and a
// command without its chain.
func (c *cmdLine) checkCommand(first token, n int) error {
	if !strings.HasPrefix(first.s, "-") {
		if ch, ok := c.rs.Chains[first.s]; ok || IsBuiltin(strings.ToUpper(first.s)) {
			name := first.s
			if ch == nil {
				name = strings.ToUpper(first.s)
			}
			return c.fail(first, "expected a command before the chain name; did you mean -A %s?", name)
		}
		return c.fail(first, "expected a command: -A CHAIN (append), -I CHAIN (insert), -N CHAIN (new chain) or -P CHAIN POLICY")
	}
	cmd := first.s
	if what, ok := unsupportedCommands[cmd]; ok {
		return c.fail(first, "the %s command (%s) edits a running rule set; a rules file builds one with -A, -I, -N and -P", cmd, what)
	}
	if cmd == "-t" || cmd == "--table" {
		return c.fail(first, "dpfw implements the filter table only: remove -t (the filter table is the default)")
	}
	if n < 2 {
		return c.fail(first, "missing the chain name after %s", cmd)
	}
	return nil
}

// newChain is -N CHAIN.
func (c *cmdLine) newChain(toks []token) error {
	if len(toks) > 2 {
		return c.fail(toks[2], "-N takes only a chain name")
	}
	return c.rs.newChain(c.at(toks[1]), toks[1].s)
}

// policy is -P CHAIN ACCEPT|DROP.
func (c *cmdLine) policy(toks []token) error {
	chainTok := toks[1]
	if len(toks) != 3 {
		return c.fail(chainTok, "want -P CHAIN ACCEPT|DROP")
	}
	ch, err := c.rs.chain(c.at(chainTok), chainTok.s)
	if err != nil {
		return err
	}
	if !IsBuiltin(ch.Name) {
		return c.fail(chainTok, "only built-in chains (INPUT, FORWARD, OUTPUT) have a policy")
	}
	if p := toks[2].s; p != "ACCEPT" && p != "DROP" {
		return c.fail(toks[2], "a policy is ACCEPT or DROP")
	}
	ch.Policy = toks[2].s
	return nil
}

// appendRule is -A CHAIN RULE.
func (c *cmdLine) appendRule(toks []token) error {
	ch, err := c.rs.chain(c.at(toks[1]), toks[1].s)
	if err != nil {
		return err
	}
	return c.addRule(ch, -1, toks[0], toks[2:])
}

// insertRule is -I CHAIN [NUMBER] RULE.
func (c *cmdLine) insertRule(toks []token) error {
	ch, err := c.rs.chain(c.at(toks[1]), toks[1].s)
	if err != nil {
		return err
	}
	insertAt, rest := 0, toks[2:]
	if len(rest) > 0 {
		if n, err := strconv.Atoi(rest[0].s); err == nil {
			if n < 1 || n > len(ch.Rules)+1 {
				return c.fail(rest[0], "rule number out of range: the chain has %d rules", len(ch.Rules))
			}
			insertAt, rest = n-1, rest[1:]
		}
	}
	return c.addRule(ch, insertAt, toks[0], rest)
}

// addRule parses a rule's options and puts its rules at insertAt in ch
// (-1: at the end).
func (c *cmdLine) addRule(ch *Chain, insertAt int, cmd token, rest []token) error {
	rs := c.rs
	rules, err := rs.parseRule(c.at(cmd), ch.Name, c.fam, rest, c.at, c.fail)
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		return nil // -4/-6 of the other family
	}
	// In a script each command runs in turn: a jump needs its chain now
	// (a save file declares every chain before its rules).
	if r := &rules[0]; !rs.save && !isBuiltinTarget(r.Target) {
		if _, ok := rs.Chains[r.Target]; !ok {
			return &ParseError{Pos: r.Pos, Token: r.Target, Msg: rs.unknownTarget(r.Target) + " (a jump needs its chain created first, with -N, earlier in the file)"}
		}
	}
	if ch.Rules == nil && rs.sizeHint[ch.Name] > 1 {
		ch.Rules = make([]Rule, 0, rs.sizeHint[ch.Name])
	}
	if insertAt >= 0 {
		ch.Rules = slices.Insert(ch.Rules, insertAt, rules...)
	} else {
		ch.Rules = append(ch.Rules, rules...)
	}
	rs.nrules += len(rules)
	return nil
}

// parseRule parses one rule's options; a rule with several -s or -d
// addresses is one rule per pair, as iptables makes it.
func (rs *Ruleset) parseRule(pos Pos, chain string, fam Family, toks []token, at func(token) Pos, fail func(token, string, ...any) error) ([]Rule, error) {
	r := Rule{Pos: pos, Chain: chain, Family: fam, Proto: -1, ICMPType: -1, ICMPCode: -1, LogLevel: DefaultLogLevel}
	p := &ruleParser{r: &r, fam: fam, sets: rs.Sets, toks: toks, at: at, fail: fail,
		generic: map[string]bool{}, targetSeen: map[string]bool{}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.expand(), nil
}

func isBuiltinTarget(t string) bool { return slices.Contains(builtinTargets, t) }

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
	for _, o := range knownOptions() {
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

// errBadValue marks errors about an option's value (not the option).
var errBadValue = errors.New("bad value")

type valueError struct{ msg string }

func (e valueError) Error() string        { return e.msg }
func (e valueError) Is(target error) bool { return target == errBadValue }

// parseLimitOption parses one -m limit / -m hashlimit option.
func parseLimitOption(r *Rule, opt, val string) error {
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

func parseAddrs(s string) ([]netip.Prefix, Family, error) {
	var out []netip.Prefix
	var fam Family
	for _, a := range strings.Split(s, ",") {
		p, err := parseAddr(a)
		if err != nil {
			return nil, 0, err
		}
		f := Family(4)
		if p.Addr().Is6() {
			f = 6
		}
		if fam != 0 && f != fam {
			return nil, 0, fmt.Errorf("mixes IPv4 and IPv6 addresses; write one rule per family")
		}
		fam = f
		out = append(out, p) // a /0 prefix matches every address: the rule expands without a match for it
	}
	return out, fam, nil
}

// parseAddr reads ADDRESS[/LEN] or an IPv4 ADDRESS/MASK with a dotted
// mask, and masks the address as iptables does (198.18.0.5/24 is
// 198.18.0.0/24).
func parseAddr(a string) (netip.Prefix, error) {
	addr, mask, hasMask := strings.Cut(a, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR (host names are not resolved): want e.g. 198.18.0.1, 198.18.0.0/15 or 2001:db8::/32")
	}
	ip = ip.Unmap()
	if !hasMask {
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	bits, err := strconv.Atoi(mask)
	if err != nil {
		m, merr := netip.ParseAddr(mask)
		if merr != nil || !m.Is4() || !ip.Is4() {
			return netip.Prefix{}, fmt.Errorf("bad mask %q: want a prefix length (/24) or, for IPv4, a dotted mask (/255.255.255.0)", mask)
		}
		if bits = maskBits(m.As4()); bits < 0 {
			return netip.Prefix{}, fmt.Errorf("non-contiguous mask %s: dpfw matches prefixes only (a deliberate difference from iptables, which accepts such masks); write the addresses as prefixes", mask)
		}
	}
	if bits < 0 || bits > ip.BitLen() {
		return netip.Prefix{}, fmt.Errorf("bad prefix length /%s: want 0 to %d", mask, ip.BitLen())
	}
	return netip.PrefixFrom(ip, bits).Masked(), nil
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

// unknownTarget explains a target that is neither built in nor a chain.
func (rs *Ruleset) unknownTarget(t string) string {
	for _, b := range builtinTargets {
		if strings.EqualFold(b, t) {
			return "targets are upper case: " + b + "?"
		}
	}
	for n := range rs.Chains {
		if strings.EqualFold(n, t) {
			return "chains are case-sensitive: " + n + "?"
		}
	}
	return "unknown target; want ACCEPT, DROP, REJECT, LOG, RETURN or a chain created with -N"
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
			msg := rs.unknownTarget(r.Target)
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
// "-A CHAIN") and appends it (one rule per -s/-d pair) to chain. Errors
// carry pos and the bad token. Call Check after the last rule.
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
	rules, err := rs.parseRule(pos, ch.Name, rs.Family, toks, at, fail)
	if err != nil {
		return err
	}
	ch.Rules = append(ch.Rules, rules...)
	rs.nrules += len(rules)
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

// tooBig is the error of a rule set past lim.MaxDecisions, at pos.
func tooBig(pos Pos, lim Limits) error {
	return &ParseError{Pos: pos, Msg: fmt.Sprintf("more than %d rules and chains: dpfw's limit (each has a 20-bit id that connection entries cache), checked before any other work; split the rule set between firewalls, or match many addresses with one rule and -m set", lim.MaxDecisions)}
}

// checkSize counts the lines that add a rule or a chain, without parsing
// them, and refuses a text with more than lim.MaxDecisions (chains: the
// rule set's chains so far) at the line that crosses the limit: an
// impossible file fails in a fraction of the time parsing it would take.
// The parser counts exactly as it goes; this count is an upper bound only
// for lines it would accept. It returns the number of -A/-I lines per
// chain name, which the parser sizes chains with.
func checkSize(file, text string, chains int, lim Limits) (map[string]int, error) {
	n, lineNo := chains, 0
	hint := map[string]int{}
	for line := range strings.SplitSeq(text, "\n") {
		lineNo++
		line = strings.TrimLeft(line, " \t")
		if !addsDecision(line) {
			continue
		}
		if n++; n > lim.MaxDecisions {
			return nil, tooBig(Pos{File: file, Line: lineNo}, lim)
		}
		if cmd, rest, ok := strings.Cut(line, " "); ok && (cmd == "-A" || cmd == "-I") {
			name, _, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
			hint[name]++
		}
	}
	return hint, nil
}

// addsDecision reports whether a (left-trimmed) line appends, inserts or
// declares something with a decision id: a rule or a chain.
func addsDecision(line string) bool {
	// Commands as typed: "$ sudo iptables -A INPUT …".
	for _, w := range [...]string{"$ ", "sudo ", "iptables ", "ip6tables "} {
		line = strings.TrimLeft(strings.TrimPrefix(line, w), " \t")
	}
	if line == "" {
		return false
	}
	if line[0] == ':' {
		name, _, _ := strings.Cut(line[1:], " ")
		return !IsBuiltin(name) // built-in chains are counted already
	}
	for _, p := range [...]string{"-A ", "-I ", "-N ", "--append ", "--insert ", "--new-chain ", "--new "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}
