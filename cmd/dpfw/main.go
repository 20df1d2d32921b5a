// Command dpfw is a DPDK-backed stateful firewall. See README.md.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	root := &cobra.Command{
		Use:           "dpfw",
		Short:         "dpfw: a DPDK-backed, stateful, bump-in-the-wire firewall",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), checkCmd(), rulesCmd(), versionCmd(), reloadCmd(), conntrackCmd(), statsCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dpfw:", err)
		os.Exit(1)
	}
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
