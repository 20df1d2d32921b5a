// Command dpfw is a DPDK-backed stateful firewall. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(execute(os.Args[1:]))
}

// execute runs the command line and returns the exit status: 0, 1 for a
// failure, 2 for a usage error (an unknown command or flag, a wrong
// number of arguments), as scripts expect.
func execute(args []string) int {
	root := newRoot()
	root.SetArgs(editAliases(args))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dpfw:", err)
		var u usageError
		if errors.As(err, &u) || isCobraUsage(err) {
			return 2
		}
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "dpfw",
		Short:         "dpfw: a DPDK-backed, stateful, bump-in-the-wire firewall",
		Version:       version + " (DPDK " + dpdkVersion() + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("dpfw {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(runCmd(), checkCmd(), rulesCmd(), versionCmd(), reloadCmd(), conntrackCmd(), haCmd(), statsCmd(), replayCmd(), traceCmd(), manCmd())
	for _, c := range root.Commands() {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.SuggestionsMinimumDistance = 2
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRun
		}
	}
	return root
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// isCobraUsage reports whether cobra refused the command line itself.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// groupRun runs a command that only groups others (rules, conntrack): with
// no argument it prints its help; an unknown subcommand is a usage error
// with the nearest one.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	} else {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		msg += "; its commands are " + strings.Join(names, ", ")
	}
	return usageError{errors.New(msg)}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print dpfw's version and the DPDK it was built for",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "dpfw %s (DPDK %s)\n", version, dpdkVersion())
		},
	}
}
