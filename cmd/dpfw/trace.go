package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"
)

// traceCmd is "dpfw trace": the running dpfw's decisions on the packets a
// filter selects, as they happen (like nft monitor trace).
func traceCmd() *cobra.Command {
	var proto, src, dst, port string
	var sport, dport, count int
	var asJSON bool
	c := &cobra.Command{
		Use:   "trace",
		Short: "Show why packets are accepted or dropped, as they pass (like nft monitor trace)",
		Long: `Attaches a filter to every worker of the running dpfw; each packet it selects prints one
line: time, worker, in>out port, the packet, its connection state (and why INVALID, and the
TCP state before and after), every rule it matched in order and the policy that decided, the
verdict and drop reason, the deciding rule, and whether the verdict came from the connection's
verdict cache. Up to 8 traces may run at once; with none, tracing costs the packet path nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"proto": proto, "src": src, "dst": dst, "port": port} {
				if v != "" {
					q.Set(k, v)
				}
			}
			for k, v := range map[string]int{"sport": sport, "dport": dport} {
				if v < 0 || v > 65535 {
					return usageError{fmt.Errorf("--%s %d: want a port 1-65535", k, v)}
				}
				if v > 0 {
					q.Set(k, fmt.Sprint(v))
				}
			}
			if count < 0 {
				return usageError{fmt.Errorf("--count %d: want 0 (until interrupted) or more", count)}
			}
			if count > 0 {
				q.Set("count", fmt.Sprint(count))
			}
			if asJSON {
				q.Set("format", "json")
			}
			resp, err := do("GET", "/api/trace", q)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
			return err
		},
	}
	fl := c.Flags()
	fl.StringVarP(&proto, "proto", "p", "", "protocol: tcp, udp, icmp, icmpv6, sctp or a number")
	fl.StringVarP(&src, "src", "s", "", "source address or CIDR")
	fl.StringVarP(&dst, "dst", "d", "", "destination address or CIDR")
	fl.IntVar(&sport, "sport", 0, "source port (TCP, UDP, SCTP)")
	fl.IntVar(&dport, "dport", 0, "destination port (TCP, UDP, SCTP)")
	fl.StringVar(&port, "port", "", "input port name (from the config's ports)")
	fl.IntVar(&count, "count", 0, "stop after this many packets (0: until interrupted)")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per packet")
	addAPIFlag(c)
	return c
}
