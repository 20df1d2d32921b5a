package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// apiAddr is the running dpfw's metrics.listen address (the API shares it).
var apiAddr string

func addAPIFlag(c *cobra.Command) {
	c.PersistentFlags().StringVar(&apiAddr, "api", "127.0.0.1:9469", "address of the running dpfw (its metrics.listen)")
}

// do makes an API request; a non-200 answer becomes the error it carries.
// The server bounds how long a request may take (a listing of a large
// table is paced to spare the packet path), so the client waits as long.
func do(method, path string, q url.Values) (*http.Response, error) {
	u := "http://" + apiAddr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach dpfw at %s (is it running? is --api its metrics.listen?): %w", apiAddr, err)
	}
	if resp.StatusCode != 200 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// call makes an API request and decodes the JSON answer into out.
func call(method, path string, q url.Values, out any) error {
	resp, err := do(method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func reloadCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "reload",
		Short: "Reload the running dpfw's config and rules (like SIGHUP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Generation uint32   `json:"generation"`
				Rules      int      `json:"rules"`
				Hash       string   `json:"hash"`
				Restart    []string `json:"needs_restart"`
				Rebuilt    string   `json:"rebuilt"`
			}
			if err := call("POST", "/api/reload", nil, &res); err != nil {
				return fmt.Errorf("reload failed, the running configuration is unchanged: %w", err)
			}
			how := map[string]string{"compiled": "rules compiled", "sets": "only sets changed: rules and counters kept", "unchanged": "rules unchanged"}[res.Rebuilt]
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: rule-set generation %d, %d rules (%s), config %s\n", res.Generation, res.Rules, how, res.Hash)
			if len(res.Restart) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "changed but applied only after a restart: %s\n", strings.Join(res.Restart, ", "))
			}
			return nil
		},
	}
	addAPIFlag(c)
	return c
}

func conntrackCmd() *cobra.Command {
	c := &cobra.Command{Use: "conntrack", Short: "List, flush and count tracked connections (like conntrack -L / -F / -S)"}
	addAPIFlag(c)
	c.AddCommand(ctListCmd(), ctFlushCmd(), ctStatsCmd(), ctExpectCmd(), ctCountCmd(), ctEventsCmd())
	return c
}

// ctFilter is the conntrack commands' filter flags, conntrack's: the
// original direction's tuple (-s, -d, --sport, --dport, also spelt
// --orig-src, --orig-dst, --orig-port-src, --orig-port-dst), the reply
// direction's (-r, -q, --reply-port-src, --reply-port-dst), -p, -f, -u and
// --state.
type ctFilter struct {
	proto, src, dst, rsrc, rdst, state, status, family string
	sport, dport, rsport, rdport                       int
}

// ctAliases are conntrack's other spellings of the filter flags.
var ctAliases = map[string]string{"orig-src": "src", "orig-dst": "dst", "orig-port-src": "sport", "orig-port-dst": "dport"}

// add registers the filter's flags on f.
func (ft *ctFilter) add(f *cobra.Command) {
	fl := f.Flags()
	fl.StringVarP(&ft.proto, "proto", "p", "", "protocol: tcp, udp, icmp, icmpv6 or a number")
	fl.StringVarP(&ft.family, "family", "f", "", "ipv4 or ipv6")
	fl.StringVarP(&ft.src, "src", "s", "", "source address or CIDR of the original direction")
	fl.StringVarP(&ft.dst, "dst", "d", "", "destination address or CIDR of the original direction")
	fl.IntVar(&ft.sport, "sport", -1, "source port of the original direction")
	fl.IntVar(&ft.dport, "dport", -1, "destination port of the original direction")
	fl.StringVarP(&ft.rsrc, "reply-src", "r", "", "source address or CIDR of the reply direction")
	fl.StringVarP(&ft.rdst, "reply-dst", "q", "", "destination address or CIDR of the reply direction")
	fl.IntVar(&ft.rsport, "reply-port-src", -1, "source port of the reply direction")
	fl.IntVar(&ft.rdport, "reply-port-dst", -1, "destination port of the reply direction")
	fl.StringVar(&ft.state, "state", "", "TCP state: SYN_SENT, ESTABLISHED, TIME_WAIT, …")
	fl.StringVarP(&ft.status, "status", "u", "", "ASSURED, SEEN_REPLY, UNREPLIED (comma-separated: all must hold)")
	fl.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if n, ok := ctAliases[name]; ok {
			name = n
		}
		return pflag.NormalizedName(name)
	})
}

// query is the filter as the API's query parameters.
func (ft *ctFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"proto": ft.proto, "family": ft.family, "src": ft.src, "dst": ft.dst,
		"reply-src": ft.rsrc, "reply-dst": ft.rdst, "state": ft.state, "status": ft.status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]int{"sport": ft.sport, "dport": ft.dport, "reply-sport": ft.rsport, "reply-dport": ft.rdport} {
		if v >= 0 {
			q.Set(k, fmt.Sprint(v))
		}
	}
	return q
}

// ctListCmd is "dpfw conntrack list".
func ctListCmd() *cobra.Command {
	var ft ctFilter
	var limit int
	var asJSON bool
	var output string
	list := &cobra.Command{
		Use: "list", Short: "List connections, one per line as conntrack -L prints them", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := ft.query()
			q.Set("limit", fmt.Sprint(limit))
			// -o timestamp is accepted, as conntrack -L accepts it; as
			// there, the lines are the same (delta-time= comes with
			// conntrack.timestamps).
			if output != "" && output != "timestamp" {
				return usageError{fmt.Errorf("-o %q: want timestamp", output)}
			}
			if !asJSON {
				// conntrack -L lines, streamed as the workers hand them over.
				q.Set("format", "text")
				resp, err := do("GET", "/api/conntrack", q)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				n, sc := 0, bufio.NewScanner(resp.Body)
				out := bufio.NewWriter(cmd.OutOrStdout())
				for sc.Scan() {
					out.Write(sc.Bytes())
					out.WriteByte('\n')
					n++
				}
				out.Flush()
				if err := sc.Err(); err != nil {
					return fmt.Errorf("listing cut short after %d entries: %w", n, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "dpfw conntrack: %d flow entries have been shown.\n", n)
				return nil
			}
			var res struct {
				Count   int               `json:"count"`
				Entries []json.RawMessage `json:"entries"`
			}
			if err := call("GET", "/api/conntrack", q, &res); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(res, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	ft.add(list)
	list.Flags().IntVar(&limit, "limit", 100000, "show at most this many (all workers together)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().StringVarP(&output, "output", "o", "", "timestamp: accepted as conntrack -L accepts it (each connection's age, delta-time=, shows with conntrack.timestamps)")
	return list
}

// ctEventsCmd is "dpfw conntrack events", like conntrack -E.
func ctEventsCmd() *cobra.Command {
	var ft ctFilter
	var events, output string
	var count int
	var asJSON bool
	c := &cobra.Command{
		Use:   "events",
		Short: "Show connection events as they happen (NEW, UPDATE, DESTROY), like conntrack -E",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := ft.query()
			q.Set("events", events)
			if count > 0 {
				q.Set("count", fmt.Sprint(count))
			}
			switch output {
			case "":
			case "timestamp":
				q.Set("timestamp", "1")
			default:
				return usageError{fmt.Errorf("-o %q: want timestamp", output)}
			}
			if asJSON {
				q.Set("format", "json")
			}
			resp, err := do("GET", "/api/conntrack/events", q)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
			return err
		},
	}
	ft.add(c)
	c.Flags().StringVarP(&events, "event-mask", "e", "", "NEW, UPDATE, DESTROY or ALL (comma-separated; default all)")
	c.Flags().StringVarP(&output, "output", "o", "", "timestamp: prefix each event with its time, as conntrack -o timestamp")
	c.Flags().IntVar(&count, "count", 0, "stop after this many events (0: until interrupted)")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per event")
	return c
}

// ctFlushCmd is "dpfw conntrack flush".
func ctFlushCmd() *cobra.Command {
	var ft ctFilter
	flush := &cobra.Command{
		Use: "flush", Short: "Delete connections (all, or those matching the filters)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Deleted int `json:"deleted"`
			}
			if err := call("POST", "/api/conntrack/flush", ft.query(), &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dpfw conntrack: %d flow entries have been deleted.\n", res.Deleted)
			if res.Deleted == 0 {
				// As conntrack -D: deleting nothing is a failure.
				return fmt.Errorf("no flow entry matched")
			}
			return nil
		},
	}
	ft.add(flush)
	return flush
}

// ctStatsCmd is "dpfw conntrack stats".
func ctStatsCmd() *cobra.Command {
	return &cobra.Command{
		Use: "stats", Short: "Per-worker connection tracking counters", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res []map[string]any
			if err := call("GET", "/api/conntrack/stats", nil, &res); err != nil {
				return err
			}
			for _, w := range res {
				fmt.Fprintf(cmd.OutOrStdout(), "worker=%v entries=%v capacity=%v created=%v expired=%v early_drops=%v table_full_drops=%v new_rate_drops=%v adaptive_expired=%v insert_failures=%v lookups=%v hits=%v by_protocol=%v invalid=%v\n",
					w["worker"], w["entries"], w["capacity"], w["created"], w["expired"], w["early_drops"], w["table_full_drops"], w["new_rate_drops"], w["adaptive_expired"], w["insert_failures"], w["lookups"], w["hits"], w["by_protocol"], w["invalid"])
			}
			return nil
		},
	}
}

// ctCountCmd is "dpfw conntrack count".
func ctCountCmd() *cobra.Command {
	return &cobra.Command{
		Use: "count", Short: "Print how many connections are tracked (like conntrack -C)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res []map[string]any
			if err := call("GET", "/api/conntrack/stats", nil, &res); err != nil {
				return err
			}
			n := 0.0
			for _, w := range res {
				if v, ok := w["entries"].(float64); ok {
					n += v
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%.0f\n", n)
			return nil
		},
	}
}

// ctExpectCmd is "dpfw conntrack expect".
func ctExpectCmd() *cobra.Command {
	var asJSON bool
	expect := &cobra.Command{
		Use: "expect", Short: "List the FTP helper's pending expectations (like conntrack -L expect)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res []struct {
				Src     string `json:"Src"`
				Dst     string `json:"Dst"`
				DstPort uint16 `json:"dport"`
				Master  string `json:"master"`
				Timeout uint32 `json:"timeout"`
				Text    string `json:"text"`
			}
			if err := call("GET", "/api/conntrack/expect", nil, &res); err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(res, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			for _, e := range res {
				fmt.Fprintln(cmd.OutOrStdout(), e.Text)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "dpfw conntrack: %d expectations have been shown.\n", len(res))
			return nil
		},
	}
	expect.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return expect
}

// rulesListCmd prints the running rules with counters, like iptables -L -v -n.
func rulesListCmd() *cobra.Command {
	var habits [4]bool
	c := &cobra.Command{
		Use: "list [CHAIN]", Short: "Show the running rules with packet and byte counters (like iptables -L -v -n -x --line-numbers)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res struct {
				Generation uint32 `json:"generation"`
				Rules      []struct {
					Chain, Num, Target, Rule string
					Packets, Bytes           uint64
				} `json:"rules"`
			}
			if err := call("GET", "/api/rules", nil, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			// Group by chain in first-seen order; the policy goes in the
			// chain's header, as iptables -L -v prints it.
			type row struct {
				num, target, rule string
				pk, by            uint64
			}
			var order []string
			rows := map[string][]row{}
			policy := map[string]row{}
			for _, r := range res.Rules {
				if len(args) > 0 && r.Chain != args[0] {
					continue
				}
				if _, ok := rows[r.Chain]; !ok {
					order = append(order, r.Chain)
					rows[r.Chain] = nil
				}
				if r.Num == "policy" {
					policy[r.Chain] = row{target: r.Target, pk: r.Packets, by: r.Bytes}
					continue
				}
				rows[r.Chain] = append(rows[r.Chain], row{r.Num, r.Target, r.Rule, r.Packets, r.Bytes})
			}
			if len(args) > 0 && len(order) == 0 {
				return fmt.Errorf("chain %q: no such chain in the running rule set", args[0])
			}
			for i, ch := range order {
				if i > 0 {
					fmt.Fprintln(tw)
				}
				if pol, ok := policy[ch]; ok && pol.target != "" {
					fmt.Fprintf(tw, "Chain %s (policy %s %d packets, %d bytes)\n", ch, pol.target, pol.pk, pol.by)
				} else {
					fmt.Fprintf(tw, "Chain %s\n", ch)
				}
				fmt.Fprintln(tw, "num\tpkts\tbytes\ttarget\trule")
				for _, r := range rows[ch] {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", r.num, r.pk, r.by, r.target, r.rule)
				}
			}
			fmt.Fprintf(tw, "\n# rule-set generation %d\n", res.Generation)
			return tw.Flush()
		},
	}
	// iptables -L habits: dpfw always prints rule numbers and exact,
	// numeric counters.
	for i, f := range []struct{ name, short string }{{"line-numbers", ""}, {"exact", "x"}, {"numeric", "n"}, {"verbose", "v"}} {
		c.Flags().BoolVarP(&habits[i], f.name, f.short, false, "accepted as iptables -L takes it; dpfw always lists that way")
	}
	return c
}

func statsCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "stats", Short: "Port and worker counters of the running dpfw", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res map[string]any
			if err := call("GET", "/api/stats", nil, &res); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(res, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	addAPIFlag(c)
	return c
}
