package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/dpfw/dpfw/control/daemon"
	"github.com/spf13/cobra"
)

// haCmd is "dpfw ha": the connection-state sync with the peer.
func haCmd() *cobra.Command {
	c := &cobra.Command{Use: "ha", Short: "Connection-state sync with the peer firewall (like conntrackd -s / -e)"}
	addAPIFlag(c)
	c.AddCommand(haStatusCmd(), haExternalCmd(), haPromoteCmd(), haDemoteCmd())
	return c
}

// haStatusCmd is "dpfw ha status".
func haStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use: "status", Short: "The sync link: peer, last message, cache, counters (like conntrackd -s)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s daemon.SyncStatus // the API's answer
			resp, err := do("GET", "/api/ha/status", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			if err := json.Unmarshal(raw, &s); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			last := "never"
			if s.PeerAgo != "" {
				last = s.PeerAgo + " ago"
			}
			fwd := "forwarding"
			if s.Standby {
				fwd = "forwarding nothing (dpfw ha promote)"
			}
			if !s.Ready {
				fwd += "; not ready: waiting for the peer's connections (its answer to our resync)"
			}
			fmt.Fprintf(w, "role %s, %s\n", s.Role, fwd)
			via := ""
			if s.Multicast != "" {
				via = " via multicast group " + s.Multicast
			}
			fmt.Fprintf(w, "mode %s, link %s: %s <-> peer %s%s, last message from the peer %s\n", s.Mode, s.Link, s.Local, s.Peer, via, last)
			fmt.Fprintf(w, "external cache: %d connections%s; resend queue: %d; FTFW handshake: %s\n", s.External,
				map[bool]string{true: " (dumping ours to the peer)"}[s.Dumping], s.ResendQueue, s.Handshake)
			fmt.Fprintf(w, "counters: %s\nmalformed: %s\nrefused: %s\n", kv(s.Counters), kv(s.Malformed), kv(s.Refused))
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// kv formats counters as sorted name=value pairs.
func kv(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// haExternalCmd is "dpfw ha external".
func haExternalCmd() *cobra.Command {
	var expect bool
	c := &cobra.Command{
		Use: "external", Short: "The peer's connections this node holds (like conntrackd -e; --expect: its expectations)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var q url.Values
			if expect {
				q = url.Values{"expect": {"1"}}
			}
			resp, err := do("GET", "/api/ha/external", q)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
			return err
		},
	}
	c.Flags().BoolVar(&expect, "expect", false, "list the peer's FTP expectations (like conntrackd -e expect)")
	return c
}

// haPromoteCmd is "dpfw ha promote".
func haPromoteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "promote", Short: "Make this backup active: install the peer's connections, then forward (like conntrackd -c)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p struct {
				Installed int    `json:"installed"`
				Failed    int    `json:"failed"`
				Took      string `json:"took"`
			}
			if err := call("POST", "/api/ha/promote", nil, &p); err != nil {
				return fmt.Errorf("not promoted: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "promoted: active, forwarding; %d of the peer's connections installed, %d refused, in %s\n", p.Installed, p.Failed, p.Took)
			return nil
		},
	}
}

// haDemoteCmd is "dpfw ha demote".
func haDemoteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "demote", Short: "Make this active node a backup: forward nothing, keep the tables", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r map[string]string
			if err := call("POST", "/api/ha/demote", nil, &r); err != nil {
				return fmt.Errorf("not demoted: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "demoted: backup, forwarding nothing")
			return nil
		},
	}
}
