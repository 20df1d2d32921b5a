package main

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strings"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/spf13/cobra"
)

func rulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Work with rule files (iptables syntax)",
	}
	list := rulesListCmd()
	addAPIFlag(list)
	cmd.AddCommand(rulesCheckCmd(), list, rulesImportCmd(), rulesZeroCmd(), rulesSaveCmd())
	for _, c := range rulesEditCmds() {
		addAPIFlag(c)
		cmd.AddCommand(c)
	}
	return cmd
}

// rulesCheckCmd is "dpfw rules check".
func rulesCheckCmd() *cobra.Command {
	var ports, setFiles []string
	var v6, quiet bool
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a rules file and print the rules as dpfw understood them",
		Long: `check parses FILE (iptables-save output, or lines such as
"-A INPUT -p tcp --dport 22 -m state --state NEW -j ACCEPT"), compiles it, and
prints every chain and rule in iptables -S form. Errors name file:line:column,
the bad token, and a fix; nothing is printed then and the exit status is 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sets, err := readSetFlags(setFiles)
			if err != nil {
				return err
			}
			rs, err := parseRulesFileSets(args[0], family(v6), sets)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				out = summaryOnly{out}
			}
			return checkRules(out, rs, ports)
		},
	}
	check.Flags().StringArrayVar(&setFiles, "set", nil, "NAME=FILE: a set for -m set --match-set NAME, from a set file (as rules.sets[].file: addresses, CIDRs, ranges, or ipset save output); repeatable")
	check.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the summary line (rules, chains, classifier size), not every rule")
	check.Flags().StringSliceVar(&ports, "ports", nil, "port names that -i/-o may use (default: any name used is accepted)")
	check.Flags().BoolVarP(&v6, "ipv6", "6", false, "the file is an ip6tables rule set (default: iptables, or both families when the file does not say)")
	return check
}

// checkRules compiles rs with the port names given (none: every name rs
// uses) and prints it in iptables -S form with the classifier's size.
func checkRules(out io.Writer, rs *rules.Ruleset, ports []string) error {
	env := filter.Env{Ports: map[string]uint16{}}
	for i, p := range ports {
		env.Ports[p] = uint16(i)
	}
	if len(ports) == 0 {
		// Accept every port name the file uses.
		for _, name := range rs.Order {
			for _, r := range rs.Chains[name].Rules {
				for _, p := range []string{r.In, r.Out} {
					if _, ok := env.Ports[p]; p != "" && !ok {
						env.Ports[p] = uint16(len(env.Ports))
					}
				}
			}
		}
	}
	f, err := filter.Compile(rs, env, 1)
	if err != nil {
		return err
	}
	for _, name := range rs.Order {
		ch := rs.Chains[name]
		if rules.IsBuiltin(name) {
			fmt.Fprintf(out, "-P %s %s\n", name, ch.Policy)
		} else {
			fmt.Fprintf(out, "-N %s\n", name)
		}
	}
	for _, name := range rs.Order {
		for _, r := range rs.Chains[name].Rules {
			fmt.Fprintln(out, r.String())
		}
	}
	fmt.Fprintf(out, "# %d rules in %d chains; classifier %d bitsets, %d indexed chains, %d short chains, %d bytes\n",
		f.Stats.Rules, len(rs.Order), f.Stats.Bitsets, f.Stats.Indexed, f.Stats.Linear, f.Stats.Bytes)
	if f.Stats.Sets > 0 {
		fmt.Fprintf(out, "# %d sets: %d entries in %d bytes (%.1f bytes per entry)\n",
			f.Stats.Sets, f.Stats.SetEntries, f.Stats.SetBytes, float64(f.Stats.SetBytes)/float64(max(1, f.Stats.SetEntries)))
	}
	return nil
}

// summaryOnly passes on only the lines that start with "#": checkRules'
// summary, for --quiet.
type summaryOnly struct{ w io.Writer }

func (s summaryOnly) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("#")) {
		if _, err := s.w.Write(b); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// rulesSaveCmd is "dpfw rules save".
func rulesSaveCmd() *cobra.Command {
	var v6 bool
	save := &cobra.Command{
		Use:   "save [FILE]",
		Short: "Print a rule set as iptables-save prints it",
		Long: `save prints FILE's rule set, or with no FILE the running dpfw's, in the
canonical form iptables-save prints (implicit -m tcp/-m udp/-m icmp, /32
masks, numeric ports and ICMP types, one rule per -s/-d pair), without the
comment header and with zero counters. For a rule set both accept, it equals
iptables-save's output for the same input (the test suite checks this
against the real iptables in a network namespace).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				var res struct {
					Save string `json:"save"`
				}
				if err := call("GET", "/api/rules/save", nil, &res); err != nil {
					return err
				}
				_, err := fmt.Fprint(cmd.OutOrStdout(), res.Save)
				return err
			}
			rs, err := parseRulesFile(args[0], family(v6))
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), rs.Save())
			return err
		},
	}
	save.Flags().BoolVarP(&v6, "ipv6", "6", false, "the file is an ip6tables rule set")
	addAPIFlag(save)
	return save
}

// rulesImportCmd is "dpfw rules import".
func rulesImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Convert iptables syntax to dpfw's structured YAML rules",
		Long: `import parses FILE (iptables-save output or -A lines) and prints the same
rule set in the structured form, a "rules:" section to paste into a dpfw config.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, err := parseRulesFile(args[0], 0)
			if err != nil {
				return err
			}
			y, err := ruleset.Import(rs)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
}

// rulesZeroCmd is "dpfw rules zero".
func rulesZeroCmd() *cobra.Command {
	zero := &cobra.Command{
		Use: "zero [CHAIN [N]]", Short: "Zero the running rules' counters: all, a chain's, or rule N's (iptables -Z)", Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if len(args) > 0 {
				q.Set("chain", args[0])
			}
			if len(args) > 1 {
				q.Set("num", args[1])
			}
			var res map[string]string
			if err := call("POST", "/api/rules/zero", q, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res["result"])
			return nil
		},
	}
	addAPIFlag(zero)
	return zero
}

// parseRulesFile reads (bounded, as a reload does) and parses a file in
// iptables syntax of family fam (0: as the file says).
func parseRulesFile(path string, fam rules.Family) (*rules.Ruleset, error) {
	return parseRulesFileSets(path, fam, nil)
}

// parseRulesFileSets is parseRulesFile with sets for -m set.
func parseRulesFileSets(path string, fam rules.Family, sets map[string][]netip.Prefix) (*rules.Ruleset, error) {
	b, err := config.ReadStable("rules file", path, config.DefaultMaxFileSize)
	if err != nil {
		return nil, err
	}
	return rules.Parse(path, string(b), rules.ParseOptions{Family: fam, Sets: sets})
}

// readSetFlags reads --set NAME=FILE flags into sets.
func readSetFlags(flags []string) (map[string][]netip.Prefix, error) {
	sets := map[string][]netip.Prefix{}
	for _, f := range flags {
		name, path, ok := strings.Cut(f, "=")
		if !ok || name == "" || path == "" {
			return nil, usageError{fmt.Errorf("--set %q: want NAME=FILE, e.g. --set blocklist=blocklist.txt", f)}
		}
		if _, dup := sets[name]; dup {
			return nil, usageError{fmt.Errorf("--set %s: the set is given twice", name)}
		}
		b, err := config.ReadStable("set file", path, config.DefaultMaxFileSize)
		if err != nil {
			return nil, err
		}
		ps, err := ruleset.ParseSetFile(name, path, string(b))
		if err != nil {
			return nil, err
		}
		sets[name] = ps
	}
	return sets, nil
}

func family(v6 bool) rules.Family {
	if v6 {
		return 6
	}
	return 0
}
