package main

import (
	"fmt"
	"os"

	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/spf13/cobra"
)

func rulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Work with rule files (iptables syntax)",
	}
	var ports []string
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a rules file and print the rules as dpfw understood them",
		Long: `check parses FILE (iptables-save output, or lines such as
"-A INPUT -p tcp --dport 22 -m state --state NEW -j ACCEPT"), compiles it, and
prints every chain and rule in iptables -S form. Errors name file:line:column,
the bad token, and a fix; nothing is printed then and the exit status is 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, err := parseRulesFile(args[0])
			if err != nil {
				return err
			}
			env := filter.Env{Ports: map[string]uint16{}, Workers: 1}
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
				return fmt.Errorf("%w (name the ports with --ports)", err)
			}
			out := cmd.OutOrStdout()
			for _, name := range rs.Order {
				ch := rs.Chains[name]
				if filter.IsBuiltin(name) {
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
			fmt.Fprintf(out, "# %d rules in %d chains; classifier %d bitsets, %d bytes\n",
				f.Stats.Rules, len(rs.Order), f.Stats.Bitsets, f.Stats.Bytes)
			return nil
		},
	}
	check.Flags().StringSliceVar(&ports, "ports", nil, "port names that -i/-o may use (default: any name used is accepted)")
	list := rulesListCmd()
	addAPIFlag(list)
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Convert iptables syntax to dpfw's structured YAML rules",
		Long: `import parses FILE (iptables-save output or -A lines) and prints the same
rule set in the structured form, a "rules:" section to paste into a dpfw config.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, err := parseRulesFile(args[0])
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
	zero := &cobra.Command{
		Use: "zero", Short: "Zero the running rules' counters (iptables -Z)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res map[string]string
			if err := call("POST", "/api/rules/zero", nil, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res["result"])
			return nil
		},
	}
	addAPIFlag(zero)
	cmd.AddCommand(check, list, imp, zero)
	return cmd
}

// parseRulesFile reads and parses a file in iptables syntax.
func parseRulesFile(path string) (*filter.Ruleset, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return filter.ParseIptables(path, string(b))
}
