package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Live rule edits, as iptables -I, -A, -D, -R and -C make them: an edit is
// applied to a copy of a (one-family) rule set's text, which is parsed
// again whole, so an edited rule set is checked exactly as a file is
// (jumps, loops, limits), and the rule itself as a line of one.

// EditOp is what an edit does.
type EditOp uint8

// Edit operations.
const (
	Insert  EditOp = iota + 1 // -I CHAIN [N] RULE: before rule N (default 1)
	Append                    // -A CHAIN RULE
	Delete                    // -D CHAIN N, or -D CHAIN RULE: the first rule equal to it
	Replace                   // -R CHAIN N RULE
	Check                     // -C CHAIN RULE: is there such a rule?
)

var editNames = map[EditOp]string{Insert: "-I", Append: "-A", Delete: "-D", Replace: "-R", Check: "-C"}

func (op EditOp) String() string { return editNames[op] }

// Edit is one edit: Num is a 1-based rule number (0: none given), Spec the
// rule's matches and target as iptables takes them after the chain.
type Edit struct {
	Op    EditOp
	Chain string
	Num   int
	Spec  string
}

// ErrNoMatch is Check's and Delete's answer when no rule equals the spec
// (iptables: "Bad rule (does a matching rule exist in that chain?)").
var ErrNoMatch = errors.New("bad rule (does a matching rule exist in that chain?)")

// ApplyEdit returns rs with e applied, parsed anew with its family and
// sets. rs must be a one-family rule set (not MergeFamilies' result: edit
// its families). For Check it returns rs itself, or ErrNoMatch.
func ApplyEdit(rs *Ruleset, e Edit) (*Ruleset, error) {
	if v4, _ := rs.Families(); v4 != nil {
		return nil, errors.New("rules.ApplyEdit: edit one family of a merged rule set")
	}
	ch, ok := rs.Chains[e.Chain]
	if !ok {
		return nil, fmt.Errorf("chain %q: no such chain (the rule set has %s)", e.Chain, strings.Join(rs.Order, ", "))
	}
	lines := make([]string, len(ch.Rules))
	for i := range ch.Rules {
		lines[i] = ch.Rules[i].Save()
	}
	if strings.TrimSpace(e.Spec) == "" && e.Op != Delete {
		return nil, fmt.Errorf("%s %s: the rule is missing (matches and a target, e.g. -p tcp --dport 22 -j ACCEPT)", e.Op, e.Chain)
	}
	if e.Op == Delete && e.Spec == "" && e.Num == 0 {
		return nil, fmt.Errorf("-D %s: give a rule number or the rule", e.Chain)
	}
	var rule string
	if e.Spec != "" {
		r, err := parseSpec(rs, e.Chain, e.Spec)
		if err != nil {
			return nil, err
		}
		rule = r.Save()
	}
	lines, err := edit(lines, e, rule)
	if err != nil {
		return rs, err
	}
	if e.Op == Check {
		return rs, nil
	}
	return rs.withChain(e.Chain, lines)
}

// edit applies e to a chain's rule lines; rule is the spec's line.
func edit(lines []string, e Edit, rule string) ([]string, error) {
	n := len(lines)
	find := func() int {
		for i, l := range lines {
			if l == rule {
				return i
			}
		}
		return -1
	}
	inRange := func(lo, hi int) error {
		if e.Num < lo || e.Num > hi {
			if hi < lo {
				return fmt.Errorf("%s %s %d: chain %s is empty", e.Op, e.Chain, e.Num, e.Chain)
			}
			return fmt.Errorf("%s %s %d: index of the rule out of range: want %d to %d", e.Op, e.Chain, e.Num, lo, hi)
		}
		return nil
	}
	out := append([]string(nil), lines...)
	switch e.Op {
	case Insert:
		num := max(e.Num, 1)
		if e.Num != 0 {
			if err := inRange(1, n+1); err != nil {
				return nil, err
			}
		}
		return append(out[:num-1], append([]string{rule}, out[num-1:]...)...), nil
	case Append:
		return append(out, rule), nil
	case Replace:
		if err := inRange(1, n); err != nil {
			return nil, err
		}
		out[e.Num-1] = rule
		return out, nil
	case Delete:
		if rule == "" {
			if err := inRange(1, n); err != nil {
				return nil, err
			}
			return append(out[:e.Num-1], out[e.Num:]...), nil
		}
		fallthrough
	case Check:
		i := find()
		if i < 0 {
			return nil, ErrNoMatch
		}
		if e.Op == Check {
			return out, nil
		}
		return append(out[:i], out[i+1:]...), nil
	}
	return nil, fmt.Errorf("edit %d: unknown operation", e.Op)
}

// header is the rule set's text without rules: its chains and policies.
func (rs *Ruleset) header() []string {
	out := []string{"*filter"}
	for _, name := range rs.Order {
		pol := rs.Chains[name].Policy
		if !IsBuiltin(name) {
			pol = "-"
		}
		out = append(out, fmt.Sprintf(":%s %s [0:0]", name, pol))
	}
	return out
}

// parseSpec parses one rule of chain, in rs's context (its chains, family
// and sets), and names the problem as the rule's, by column.
func parseSpec(rs *Ruleset, chain, spec string) (*Rule, error) {
	if strings.ContainsAny(spec, "\n\r") {
		return nil, errors.New("a rule is one line")
	}
	text := rs.header()
	line := len(text) + 1
	text = append(text, "-A "+chain+" "+spec, "COMMIT")
	prs, err := Parse("rule", strings.Join(text, "\n")+"\n", ParseOptions{Family: rs.Family, Sets: rs.Sets})
	if err != nil {
		// "rule:LINE:COL: …": the rule is the line; its columns count
		// from "-A CHAIN ".
		msg := err.Error()
		prefix := "rule:" + strconv.Itoa(line) + ":"
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			if col, tail, ok := strings.Cut(rest, ":"); ok {
				if c, err := strconv.Atoi(col); err == nil {
					return nil, fmt.Errorf("rule column %d:%s", max(c-len("-A "+chain+" "), 1), tail)
				}
			}
		}
		return nil, errors.New(strings.TrimPrefix(msg, prefix))
	}
	rules := prs.Chains[chain].Rules
	return &rules[len(rules)-1], nil
}

// withChain returns rs with chain's rules replaced by lines, parsed anew.
func (rs *Ruleset) withChain(chain string, lines []string) (*Ruleset, error) {
	text := rs.header()
	for _, name := range rs.Order {
		if name == chain {
			text = append(text, lines...)
			continue
		}
		for i := range rs.Chains[name].Rules {
			text = append(text, rs.Chains[name].Rules[i].Save())
		}
	}
	text = append(text, "COMMIT")
	return Parse("edited rule set", strings.Join(text, "\n")+"\n", ParseOptions{Family: rs.Family, Sets: rs.Sets})
}
