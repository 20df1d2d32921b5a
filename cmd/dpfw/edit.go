package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// editFlags are iptables' spellings of the edit commands: "dpfw rules -I
// INPUT …" is "dpfw rules insert INPUT …".
var editFlags = map[string]string{"-I": "insert", "-A": "append", "-D": "delete", "-R": "replace", "-C": "exists",
	"--insert": "insert", "--append": "append", "--delete": "delete", "--replace": "replace", "--check": "exists"}

// editAliases rewrites an iptables-style edit ("rules -I …") to its
// subcommand. (-C is "exists": "rules check FILE" checks a rules file.)
func editAliases(args []string) []string {
	if len(args) >= 2 && args[0] == "rules" {
		if sub, ok := editFlags[args[1]]; ok {
			return append([]string{"rules", sub}, args[2:]...)
		}
	}
	return args
}

// editSpec is what each edit takes after the chain.
var editSpec = map[string]struct {
	use       string
	num, rule int // 0: never, 1: optional (delete: N or a rule), 2: required
	short     string
}{
	"insert":  {"insert [-6] [--persist] CHAIN [N] RULE…", 1, 2, "Insert a rule before rule N (default 1) of the running rule set, like iptables -I"},
	"append":  {"append [-6] [--persist] CHAIN RULE…", 0, 2, "Append a rule to a chain of the running rule set, like iptables -A"},
	"delete":  {"delete [-6] [--persist] CHAIN N | CHAIN RULE…", 1, 1, "Delete rule N, or the first rule equal to RULE, like iptables -D"},
	"replace": {"replace [-6] [--persist] CHAIN N RULE…", 2, 2, "Replace rule N, like iptables -R"},
	"exists":  {"exists [-6] CHAIN RULE…", 0, 2, "Exit 0 if the chain has a rule equal to RULE, 1 if not, like iptables -C"},
}

// rulesEditCmds are the live edit commands.
func rulesEditCmds() []*cobra.Command {
	var out []*cobra.Command
	for _, op := range []string{"insert", "append", "delete", "replace", "exists"} {
		spec := editSpec[op]
		out = append(out, &cobra.Command{
			Use: spec.use, Short: spec.short,
			Long: spec.short + `. The rule is written as iptables takes it after the chain
("-p tcp --dport 22 -m state --state NEW -j ACCEPT"); the edited rule set is checked,
compiled and swapped in as a reload is, with the same errors; the counters of the other
rules carry over. The edit lives in the running rule set only, unless --persist writes it
to rules.file (rules.file6 with -6); a reload from the file replaces edits not persisted.
Options come before the chain: -6 (the ip6tables rule set), --persist, --api ADDR.`,
			DisableFlagParsing: true,
			RunE:               func(cmd *cobra.Command, args []string) error { return runEdit(cmd, op, args) },
		})
	}
	return out
}

// runEdit parses an edit's command line and posts it.
func runEdit(cmd *cobra.Command, op string, args []string) error {
	req := map[string]any{"op": op}
	if op == "exists" {
		req["op"] = "check"
	}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch a := args[0]; {
		case a == "-h" || a == "--help":
			return cmd.Help()
		case a == "-6" || a == "--ipv6":
			req["ipv6"] = true
		case a == "--persist" && op != "exists":
			req["persist"] = true
		case a == "--api" && len(args) > 1:
			apiAddr = args[1]
			args = args[1:]
		case strings.HasPrefix(a, "--api="):
			apiAddr = strings.TrimPrefix(a, "--api=")
		default:
			return usageError{fmt.Errorf("%q: unknown option before the chain (want -6, --persist, --api ADDR; the rule comes after the chain)", a)}
		}
		args = args[1:]
	}
	spec := editSpec[op]
	if len(args) == 0 {
		return usageError{fmt.Errorf("missing CHAIN: dpfw rules %s", spec.use)}
	}
	req["chain"], args = args[0], args[1:]
	if spec.num > 0 && len(args) > 0 {
		if n, err := strconv.Atoi(args[0]); err == nil {
			req["num"], args = n, args[1:]
		}
	}
	if spec.num == 2 && req["num"] == nil {
		return usageError{fmt.Errorf("missing rule number N: dpfw rules %s", spec.use)}
	}
	if len(args) > 0 && op == "delete" && req["num"] != nil {
		return usageError{fmt.Errorf("%q: unexpected after the rule number", strings.Join(args, " "))}
	}
	if len(args) == 0 && (spec.rule == 2 || op == "delete" && req["num"] == nil) {
		return usageError{fmt.Errorf("missing RULE: dpfw rules %s", spec.use)}
	}
	req["rule"] = joinRule(args)
	return postEdit(cmd, op, req)
}

// joinRule puts the shell's words back into one rule line, quoting those
// with spaces as iptables-save does.
func joinRule(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"") {
			out[i] = strconv.Quote(a)
		}
	}
	return strings.Join(out, " ")
}

// postEdit sends the edit and reports its outcome; a check that finds no
// rule exits 1, as iptables -C does.
func postEdit(cmd *cobra.Command, op string, req map[string]any) error {
	body, _ := json.Marshal(req)
	resp, err := http.Post("http://"+apiAddr+"/api/rules/edit", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("cannot reach dpfw at %s (is it running? is --api its metrics.listen?): %w", apiAddr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res struct {
		Error      string `json:"error"`
		Generation uint32 `json:"generation"`
		Rules      int    `json:"rules"`
		Persisted  string `json:"persisted"`
	}
	_ = json.Unmarshal(b, &res)
	if resp.StatusCode != 200 {
		if res.Error == "" {
			res.Error = resp.Status
		}
		return errors.New(res.Error)
	}
	if op == "exists" {
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: rule-set generation %d, %d rules", op, res.Generation, res.Rules)
	if res.Persisted != "" {
		fmt.Fprintf(cmd.OutOrStdout(), ", written to %s", res.Persisted)
	}
	fmt.Fprintln(cmd.OutOrStdout())
	return nil
}
