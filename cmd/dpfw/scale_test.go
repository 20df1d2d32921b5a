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
