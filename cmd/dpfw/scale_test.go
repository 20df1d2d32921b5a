package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/perf/rulegen"
)

// TestRulesCheckScale: dpfw rules check accepts generated 100,000-rule
// files, and refuses a file past the structural limit at the line that
// crosses it, naming the limit and what to do.
func TestRulesCheckScale(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, text, want string }{
		{"flat", rulegen.Flat(100_000), "# 100001 rules in 3 chains"},
		{"tenants", rulegen.Tenants(100_000, 1), "# 100000 rules in 804 chains"},
	} {
		path := filepath.Join(dir, tc.name+".rules")
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runDPFW(t, "rules", "check", "-q", path)
		if r.code != 0 || !strings.HasPrefix(r.stdout, tc.want) || !strings.Contains(r.stdout, "indexed chains") {
			t.Errorf("%s: exit %d\n%s", tc.name, r.code, r.combined)
		}
	}
	var b strings.Builder
	b.WriteString("*filter\n")
	for i := 0; i < rules.MaxDecisions; i++ {
		b.WriteString("-A INPUT -p tcp --dport 22 -j ACCEPT\n")
	}
	b.WriteString("COMMIT\n")
	path := filepath.Join(dir, "huge.rules")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runDPFW(t, "rules", "check", "-q", path)
	want := fmt.Sprintf("%s:%d: more than %d rules and chains: dpfw's limit", path, rules.MaxDecisions-1, rules.MaxDecisions)
	if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "split the rule set") {
		t.Errorf("a file past the limit: exit %d\n%.500s\nwant %q", r.code, r.combined, want)
	}
}

// TestRulesCheckSets: rules check reads -m set's sets from --set NAME=FILE
// and reports them; a set of the other family, a missing set and a bad
// flag are refused with the place and the fix.
func TestRulesCheckSets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rulesFile := write("r.v4", "-A FORWARD -m set --match-set blk src -j DROP\n")
	set := write("blk.txt", "# blocklist\n198.18.0.0/24\n198.18.1.1-198.18.1.4\n")
	r := runDPFW(t, "rules", "check", "--set", "blk="+set, rulesFile)
	if r.code != 0 || !strings.Contains(r.stdout, "--match-set blk src") || !strings.Contains(r.stdout, "# 1 sets: 4 entries") {
		t.Errorf("rules check with a set: exit %d\n%s", r.code, r.combined)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rules", "check", rulesFile}, 1, `no set named "blk"`},
		{[]string{"rules", "check", "--set", "blk", rulesFile}, 2, "want NAME=FILE"},
		{[]string{"rules", "check", "-6", "--set", "blk=" + set, rulesFile}, 1, `set "blk" holds only IPv4 addresses and this rule is IPv6`},
		{[]string{"rules", "check", "--set", "blk=" + write("bad.txt", "198.18.0.1\n198.18.0.x\n"), rulesFile}, 1, "bad.txt:2:1: \"198.18.0.x\""},
	} {
		if r := runDPFW(t, tc.args...); r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("dpfw %v: exit %d (want %d)\n%s\nwant %q", tc.args, r.code, tc.code, r.combined, tc.want)
		}
	}
}
