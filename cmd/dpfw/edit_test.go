package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
)

// TestTapRulesEdit: live edits as iptables makes them, under traffic: an
// iperf3 transfer runs through every edit and completes (no connection
// lost); -C answers 1 then 0; -I opens ping and -D closes it again; the
// ESTABLISHED rule's counter carries over each edit; a bad rule is refused
// with the column and the running rules stay; --persist writes rules.file,
// and the watcher's reload of it keeps the running set and its counters.
func TestTapRulesEdit(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "iperf3")
	rulesFile := filepath.Join(t.TempDir(), "rules.v4")
	base := strings.Replace(statefulRules, "-A INPUT -p icmp --icmp-type echo-request -m state --state NEW -j ACCEPT\n", "", 1) +
		"-A INPUT -p tcp --dport 5201 -m state --state NEW -j ACCEPT\n"
	if err := os.WriteFile(rulesFile, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	p, cns, sns := tapPair(t, func(c *config.Config) {
		c.Rules = config.Default().Rules
		c.Rules.File = rulesFile
	})
	ping := func() bool { return cns.Command("ping", "-c", "1", "-W", "1", "198.18.0.2").Run() == nil }
	cli, done, out := startIperf(t, cns, sns, 8)
	time.Sleep(time.Second)

	// edit runs "dpfw rules OP --api ADDR ARGS…".
	edit := func(op string, args ...string) (string, int) {
		return runCLI(t, append([]string{"rules", op, "--api", p.metrics}, args...)...)
	}
	echo := []string{"INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-m", "state", "--state", "NEW", "-j", "ACCEPT"}
	if out, code := edit("-C", echo...); code != 1 || !strings.Contains(out, "does a matching rule exist in that chain?") {
		t.Errorf("-C of a missing rule: exit %d\n%s", code, out)
	}
	if ping() {
		t.Fatal("ping went through before any rule allowed it")
	}
	estBefore := p.metric("dpfw_rule_packets_total", `chain="INPUT"`, `rule="1"`)
	if out, code := edit("-I", append([]string{"INPUT", "2"}, echo[1:]...)...); code != 0 || !strings.Contains(out, "insert: rule-set generation 2") {
		t.Fatalf("-I: exit %d\n%s", code, out)
	}
	if out, code := edit("-C", echo...); code != 0 {
		t.Errorf("-C of the inserted rule: exit %d\n%s", code, out)
	}
	if !ping() {
		t.Errorf("ping after -I allowed it failed\n%s", p.dump())
	}
	if est := p.metric("dpfw_rule_packets_total", `chain="INPUT"`, `rule="1"`); est < estBefore {
		t.Errorf("the ESTABLISHED rule's counter went from %v to %v across an edit; want it carried over", estBefore, est)
	}
	if out, code := edit("append", "INPUT", "-p", "tcp", "--dprot", "22", "-j", "ACCEPT"); code != 1 || !strings.Contains(out, `rule column 8: "--dprot"`) {
		t.Errorf("a bad rule: exit %d\n%s", code, out)
	}
	if out, code := edit("delete", echo...); code != 0 {
		t.Fatalf("-D by spec: exit %d\n%s", code, out)
	}
	if ping() {
		t.Error("ping still works after -D removed its rule")
	}
	if out, code := edit("-A", append([]string{"--persist"}, echo...)...); code != 0 || !strings.Contains(out, "written to "+rulesFile) {
		t.Fatalf("-A --persist: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(rulesFile); !strings.Contains(string(b), "-A INPUT -p icmp -m icmp --icmp-type 8 -m state --state NEW -j ACCEPT") || !strings.Contains(string(b), "COMMIT") {
		t.Errorf("rules.file after --persist:\n%s", b)
	}
	if !ping() {
		t.Error("ping after the persisted -A failed")
	}
	// The watcher sees the file renamed into place: the same rules, kept.
	time.Sleep(1500 * time.Millisecond)
	if out, _ := p.cli("rules", "list"); !strings.Contains(out, "generation 4") {
		t.Errorf("after the watcher's reload of the persisted file, want generation 4 still:\n%s", out)
	}
	// -L CHAIN --line-numbers -x and -Z CHAIN N, as iptables takes them.
	if out, err := p.cli("rules", "list", "INPUT", "--line-numbers", "-x", "-n", "-v"); err != nil || !strings.Contains(out, "Chain INPUT") || strings.Contains(out, "Chain OUTPUT") {
		t.Errorf("rules list INPUT: %v\n%s", err, out)
	}
	est0, other0 := p.metric("dpfw_rule_packets_total", `chain="INPUT"`, `rule="1"`), p.metric("dpfw_rule_packets_total", `chain="OUTPUT"`, `rule="1"`)
	if out, err := p.cli("rules", "zero", "INPUT", "1"); err != nil {
		t.Errorf("rules zero INPUT 1: %v\n%s", err, out)
	}
	if est, other := p.metric("dpfw_rule_packets_total", `chain="INPUT"`, `rule="1"`), p.metric("dpfw_rule_packets_total", `chain="OUTPUT"`, `rule="1"`); est > est0/4 || other < other0 {
		t.Errorf("after -Z INPUT 1: INPUT 1 counts %v (was %v: want it restarted from 0), OUTPUT 1 %v (was %v: want it kept)", est, est0, other, other0)
	}
	if out, code := runCLI(t, "rules", "zero", "INPUT", "9", "--api", p.metrics); code != 1 || !strings.Contains(out, "out of range: want 1 to") {
		t.Errorf("rules zero INPUT 9: exit %d\n%s", code, out)
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "receiver") {
			t.Fatalf("iperf3 through the edits: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cli.Process.Kill()
		t.Fatalf("iperf3 did not finish:\n%s", out.String())
	}
	p.stop()
}

// The iptables spellings map to the subcommands, and the shell's words
// go back into one rule line with their quoting.
func TestEditArgs(t *testing.T) {
	if got := strings.Join(editAliases([]string{"rules", "-C", "INPUT", "-j", "ACCEPT"}), " "); got != "rules exists INPUT -j ACCEPT" {
		t.Errorf("rules -C: %s", got)
	}
	if got := strings.Join(editAliases([]string{"conntrack", "-D"}), " "); got != "conntrack -D" {
		t.Errorf("only rules edits are rewritten: %s", got)
	}
	if got := joinRule([]string{"-j", "LOG", "--log-prefix", "in: "}); got != `-j LOG --log-prefix "in: "` {
		t.Errorf("joinRule: %s", got)
	}
}
